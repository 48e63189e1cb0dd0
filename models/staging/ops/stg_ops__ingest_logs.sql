{#-
    One checkpoint row per phase (and per mart step of transform) and
    attempt of a run (ops.ingest_logs), with the counters a successful
    fetch leaves in `details` unnested.

    Ephemeral for the reason stg_ops__ingest_runs gives.
-#}

{{ config(materialized='ephemeral') }}

with

source as (

    select * from {{ source('ops', 'ingest_logs') }}

),

renamed as (

    select
        -- ids
        log_id,
        run_id,
        clan_tag,

        -- properties
        phase,
        step,
        status,
        attempt,
        error,
        details,

        -- numbers
        duration_ms,
        rows_in,
        rows_written,
        rows_changed,
        requests,
        retries,
        throttled,
        db_time_ms,
        (details ->> 'failed_requests')::int as details_failed_requests,
        (details ->> 'members')::int as details_members,
        (details ->> 'roster')::int as details_roster,
        (details ->> 'failed_players')::int as details_failed_players,
        (details ->> 'dropped_requests')::int as details_dropped_requests,
        (details ->> 'dropped_players')::int as details_dropped_players,
        (details ->> 'quarantined_bodies')::int as details_quarantined_bodies,

        -- timestamps
        started_at,
        finished_at

    from source

)

select * from renamed
