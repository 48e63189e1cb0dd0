{#-
    One row per clan and raid weekend that the pipeline has seen ended:
    ended_seen_at, the snapshot time (raw.fetch_runs.snapshot_at) of the
    first run whose capital raid seasons fetch listed the weekend in state
    `ended`. raid_season_id as capital_raid_seasons.

    Point in time: an ended weekend no longer changes, so ACE counts a
    weekend at a snapshot S only when ended_seen_at <= S, and then reads
    exactly what had been fetched by S, whatever landed later and whatever
    the weekend's own end time says (the simulated clock may be far from the
    run's clock).

    Incremental, merge by raid_season_id keeping the earliest sighting (the
    result does not depend on the order the fetches landed in): the fetches
    of the last `capital_raids_lookback_hours` (default 72) before the
    newest one here, as capital_raid_seasons.
-#}

{{
    config(
        materialized='incremental',
        unique_key='raid_season_id',
        incremental_strategy='merge',
        on_schema_change='fail',
        indexes=[
            {'columns': ['raid_season_id'], 'unique': True},
        ],
    )
}}

with

ended_fetches as (

    select * from {{ ref('stg_coc__capital_raid_seasons') }}
    where
        clan_tag is not null
        and season_start_at is not null
        and state = 'ended'
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
        snapshot_at as ended_seen_at,
        fetched_at

    from ended_fetches

),

candidates as (

    select
        raid_season_id,
        clan_tag,
        ended_seen_at,
        fetched_at

    from identified

    {% if is_incremental() %}
        union all

        select
            raid_season_id,
            clan_tag,
            ended_seen_at,
            fetched_at

        from {{ this }}
        where
            raid_season_id in (
                select identified.raid_season_id from identified
            )
    {% endif %}

),

final as (

    select
        -- ids
        raid_season_id,
        clan_tag,

        -- timestamps
        min(ended_seen_at) as ended_seen_at,
        -- the newest fetch that saw it ended: the incremental lookback
        max(fetched_at) as fetched_at

    from candidates
    group by raid_season_id, clan_tag

)

select * from final
