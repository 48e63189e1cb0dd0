{#-
    One row per ended war in a clan's war log: its latest sighting. The war
    log is fetched every run and repeats the same wars, with their result
    and final totals, but no preparation time, no members and no attacks.
    CWL season summaries (no opponent) are not wars and are left out.

    A war log entry is keyed by clan and end time:
        log_war_id = md5(clan tag || '|end ' || end time, UTC ISO)
    the same formula int_war_fetches_deduplicated falls back to when a war
    has no preparation time; `wars` matches entries to fetched wars.

    first_seen_at: the snapshot time of the first run whose war log listed
    the war (its result is final from then on; int_war_finals_observed).

    Incremental like int_war_fetches_deduplicated (`wars_lookback_hours`).
-#}

{{
    config(
        materialized='incremental',
        unique_key='log_war_id',
        incremental_strategy='merge',
        on_schema_change='fail',
        indexes=[
            {'columns': ['log_war_id'], 'unique': True},
            {'columns': ['clan_tag', 'end_at']},
        ],
    )
}}

{%- set columns = [
    'log_war_id', 'clan_tag', 'opponent_tag', 'fetch_id', 'result',
    'battle_modifier', 'clan_name', 'opponent_name', 'team_size',
    'attacks_per_member', 'clan_attacks', 'clan_stars',
    'clan_destruction_pct', 'clan_exp_earned', 'opponent_stars',
    'opponent_destruction_pct', 'end_at', 'fetched_at', 'first_seen_at',
] %}

with

war_log_wars as (

    select * from {{ ref('stg_coc__wars') }}
    where
        source_endpoint = 'warlog'
        and not is_cwl_season_summary
        and clan_tag is not null
        and end_at is not null
        {% if is_incremental() %}
            and fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(hours => {{ var('wars_lookback_hours', 72) }})
        {% endif %}

),

identified as (

    select
        md5(concat_ws(
            '|',
            clan_tag,
            'end ' || to_char(
                end_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            )
        )) as log_war_id,
        clan_tag,
        opponent_tag,
        fetch_id,
        result,
        battle_modifier,
        clan_name,
        opponent_name,
        team_size,
        attacks_per_member,
        clan_attacks,
        clan_stars,
        clan_destruction_pct,
        clan_exp_earned,
        opponent_stars,
        opponent_destruction_pct,
        end_at,
        fetched_at,
        snapshot_at as first_seen_at

    from war_log_wars

),

candidates as (

    select {{ columns | join(', ') }} from identified

    {% if is_incremental() %}
        union all

        select {{ columns | join(', ') }}
        from {{ this }}
        where log_war_id in (select identified.log_war_id from identified)
    {% endif %}

),

ranked as (

    select
        {{ columns | reject('equalto', 'first_seen_at') | join(', ') }},
        min(first_seen_at) over (partition by log_war_id) as first_seen_at,
        row_number() over (
            partition by log_war_id
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
