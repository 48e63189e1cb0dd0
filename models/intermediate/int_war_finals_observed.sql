{#-
    One row per war of the `wars` mart whose final state the pipeline has
    seen: final_seen_at, the snapshot time (raw.fetch_runs.snapshot_at) of
    the first run that showed the war ended, by a currentwar or CWL war
    fetch in state `warEnded` (int_war_fetches_deduplicated.ended_seen_at)
    or by a war log entry (int_war_log_entries_deduplicated.first_seen_at,
    matched to a fetched war as `wars` does: same clan and opponent, ended
    within an hour).

    Point in time: a war's data is final from final_seen_at on (an ended
    war no longer changes), so a metric at a snapshot S that counts only the
    wars with final_seen_at <= S reads exactly what had been fetched by S,
    whatever landed later, in whatever order, and whatever the war's own
    end time says (the simulated clock may be far from the run's clock).
    A war that has not been seen ended yet is not listed.

    A view: two small tables (one row per war).
-#}

{{ config(materialized='view') }}

with

fetched as (

    select * from {{ ref('int_war_fetches_deduplicated') }}

),

logged as (

    select * from {{ ref('int_war_log_entries_deduplicated') }}

),

sightings as (

    select
        war_id,
        ended_seen_at as final_seen_at

    from fetched
    where ended_seen_at is not null

    union all

    select
        fetched.war_id,
        logged.first_seen_at as final_seen_at

    from fetched
    inner join logged
        on
            fetched.clan_tag = logged.clan_tag
            and fetched.opponent_tag = logged.opponent_tag
            and fetched.war_type <> 'cwl'
            and fetched.end_at
            between logged.end_at - interval '1 hour'
            and logged.end_at + interval '1 hour'

    union all

    -- war log entries that are wars of their own in `wars` (never fetched)
    select
        log_war_id as war_id,
        first_seen_at as final_seen_at

    from logged

),

final as (

    select
        -- ids
        war_id,

        -- timestamps
        min(final_seen_at) as final_seen_at

    from sightings
    group by war_id

)

select * from final
