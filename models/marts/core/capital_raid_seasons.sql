{#-
    One row per clan and raid weekend: the latest fetch of the weekend wins
    (loot and attacks only grow; state goes ongoing -> ended). The API gives
    a weekend no id: raid_season_id = md5(clan tag || '|' || start time,
    UTC ISO).

    Incremental, merge by raid_season_id: every run re-reads the last 10
    weekends, so the fetches of the last `capital_raids_lookback_hours`
    (default 72) before the newest one here are merged with the stored rows
    of the same weekends, the newest fetch winning.
-#}

{{
    config(
        materialized='incremental',
        unique_key='raid_season_id',
        incremental_strategy='merge',
        on_schema_change='fail',
        indexes=[
            {'columns': ['clan_tag', 'start_at']},
            {'columns': ['fetched_at']},
        ],
    )
}}

{%- set columns = [
    'raid_season_id', 'clan_tag', 'state', 'capital_total_loot',
    'raids_completed', 'total_attacks', 'enemy_districts_destroyed',
    'offensive_reward', 'defensive_reward', 'raids_count', 'defenses_count',
    'start_at', 'end_at', 'fetch_id', 'fetched_at',
] %}

with

season_fetches as (

    select * from {{ ref('stg_coc__capital_raid_seasons') }}
    where
        clan_tag is not null
        and season_start_at is not null
        {% if is_incremental() %}
            and fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(
                hours => {{ var('capital_raids_lookback_hours', 72) }}
            )
        {% endif %}

),

identified as (

    select
        md5(concat_ws(
            '|',
            clan_tag,
            to_char(
                season_start_at at time zone 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            )
        )) as raid_season_id,
        clan_tag,
        state,
        capital_total_loot,
        raids_completed,
        total_attacks,
        enemy_districts_destroyed,
        offensive_reward,
        defensive_reward,
        raids_count,
        defenses_count,
        season_start_at as start_at,
        season_end_at as end_at,
        fetch_id,
        fetched_at

    from season_fetches

),

candidates as (

    select {{ columns | join(', ') }} from identified

    {% if is_incremental() %}
        union all

        select {{ columns | join(', ') }}
        from {{ this }}
        where
            raid_season_id in (
                select identified.raid_season_id from identified
            )
    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by raid_season_id
            order by fetched_at desc, fetch_id desc
        ) as recency

    from candidates

),

final as (

    select {{ columns | join(', ') }}
    from ranked
    where recency = 1

)

select * from final
