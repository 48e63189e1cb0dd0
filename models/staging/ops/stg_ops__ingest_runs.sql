{#-
    One row per pipeline run (ops.ingest_runs), as the orchestrator wrote
    it: the run's kind, trigger, clans, outcome, versions and counters.

    Ephemeral, unlike the other staging models: ingest_run_health is a view
    over it, and a staging view rebuilt by dbt (create, rename, drop the
    old one with cascade) would drop the health view with it until the
    marts are built again; inlined, the health view reads ops only.
-#}

{{ config(materialized='ephemeral') }}

with

source as (

    select * from {{ source('ops', 'ingest_runs') }}

),

renamed as (

    select
        -- ids
        run_id,
        flow_run_id,
        parent_run_id,
        clan_tags,

        -- properties
        kind,
        trigger,
        status,
        ingestion_version,
        schema_version,
        error,
        summary,

        -- numbers
        duration_ms,
        requests,
        failed_requests,
        retries,
        throttled,
        bytes_received,
        payloads_new,
        bytes_stored,
        rows_changed,

        -- timestamps
        started_at,
        finished_at,
        snapshot_at

    from source

)

select * from renamed
