with

fetch_log as (

    select * from {{ ref('base_coc__fetch_log') }}

),

fetch_runs as (

    select * from {{ ref('base_coc__fetch_runs') }}

),

joined as (

    select
        fetch_log.fetch_id,
        fetch_log.run_id,
        fetch_log.payload_hash,
        fetch_log.clan_tag,
        fetch_log.endpoint,
        fetch_log.resource_tag,
        fetch_log.request_path,
        fetch_runs.run_source,
        fetch_runs.ingestion_version,
        fetch_log.http_status,
        fetch_log.error_reason,
        fetch_log.error_message,
        fetch_log.is_success,
        fetch_log.is_quarantined,
        fetch_log.quarantine_reason,
        fetch_log.duration_ms,
        fetch_log.attempts,
        fetch_log.retries,
        fetch_log.throttled,
        fetch_log.max_age_seconds,
        fetch_log.source_file,
        fetch_log.requested_at,
        fetch_log.fetched_at,
        fetch_runs.snapshot_at,
        fetch_runs.run_started_at,
        fetch_runs.landed_at

    from fetch_log
    inner join fetch_runs
        on fetch_log.run_id = fetch_runs.run_id

)

select * from joined
