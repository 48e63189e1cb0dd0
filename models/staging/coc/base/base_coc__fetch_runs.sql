{#-
    Every landed run, except those held back from the marts: a run whose
    data failed a dbt data test is `held` (or `dropped` by the operator) in
    ops.held_runs, so that the other clans' runs of the same build advance
    (src/clash_pipeline/transform/isolation.py). Every fetch reaches the
    models through a join to this view, so this one filter keeps a held
    run's responses out of every staging, intermediate and mart model.
-#}

with

source as (

    select * from {{ source('coc', 'fetch_runs') }}

),

held_runs as (

    select run_id from {{ source('ops', 'held_runs') }}
    where status in ('held', 'dropped')

),

-- an anti-join: a probe of held_runs' primary key per run
kept_runs as (

    select source.* from source
    left join held_runs
        on source.run_id = held_runs.run_id
    where held_runs.run_id is null

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

    from kept_runs

)

select * from renamed
