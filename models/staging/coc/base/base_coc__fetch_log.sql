with

source as (

    select * from {{ source('coc', 'fetch_log') }}

),

renamed as (

    select
        fetch_id,
        run_id,
        payload_hash,
        clan_tag,
        endpoint,
        resource_tag,
        request_path,
        http_status,
        error_reason,
        error_message,
        http_status = 200 and payload_hash is not null as is_success,
        quarantine_reason,
        quarantine_reason is not null as is_quarantined,
        duration_ms,
        attempts,
        retries,
        throttled,
        max_age_seconds,
        source_file,
        requested_at,
        fetched_at

    from source

)

select * from renamed
