with

source as (

    select * from {{ source('coc', 'fetch_runs') }}

),

renamed as (

    select
        run_id,
        source as run_source,
        ingestion_version,
        clan_tags as run_clan_tags,
        requests as run_requests,
        failed_requests as run_failed_requests,
        payloads_new as run_payloads_new,
        bytes_received as run_bytes_received,
        bytes_new as run_bytes_new,
        started_at as run_started_at,
        snapshot_at,
        landed_at

    from source

)

select * from renamed
