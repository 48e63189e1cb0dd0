{#-
    Every successful fetch with its body and lineage: the one input of the
    entity staging models, which filter it by endpoint. Failed requests never
    have a payload (raw enforces it) and are left out here; stg_coc__fetches
    keeps them.
-#}

with

fetch_log as (

    select * from {{ ref('base_coc__fetch_log') }}

),

fetch_runs as (

    select * from {{ ref('base_coc__fetch_runs') }}

),

payloads as (

    select * from {{ ref('base_coc__payloads') }}

),

successful_fetches as (

    select * from fetch_log
    where is_success

),

joined as (

    select
        successful_fetches.fetch_id,
        successful_fetches.run_id,
        successful_fetches.payload_hash,
        successful_fetches.endpoint,
        successful_fetches.clan_tag as fetch_clan_tag,
        successful_fetches.resource_tag,
        payloads.body,
        successful_fetches.fetched_at,
        fetch_runs.snapshot_at

    from successful_fetches
    inner join fetch_runs
        on successful_fetches.run_id = fetch_runs.run_id
    inner join payloads
        on successful_fetches.payload_hash = payloads.payload_hash

)

select * from joined
