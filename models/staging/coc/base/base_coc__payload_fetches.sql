{#-
    Every successful fetch with its body and lineage: the one input of the
    entity staging models, which filter it by endpoint. Failed requests never
    have a payload (raw enforces it) and are left out here, and so are bodies
    quarantined at the door (raw.fetch_log.quarantine_reason: a body that
    would break the marts, kept in raw but never built); stg_coc__fetches
    keeps both.
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
    where is_success and not is_quarantined

),

-- Performance, for the incremental marts that read a few new fetches out of
-- a long history:
-- * the base views start with import CTEs, which PostgreSQL never flattens
--   into a join, so a plain join to them cannot use their primary keys
--   (it hashes the whole table). The run and the body are looked up per
--   fetch in LATERAL subqueries instead: filters on the fetch columns reach
--   raw.fetch_log's indexes, and each fetch costs two primary-key probes,
--   whatever the size of raw.payloads;
-- * bodies are TOASTed (compressed): every `body -> 'key'` downstream would
--   decompress the whole body again (a player view reads ~40 keys).
--   `#> '{}'` (the body itself) decompresses it once per fetch, in a
--   subquery that OFFSET 0 keeps from being flattened.
joined as (

    select
        successful_fetches.fetch_id,
        successful_fetches.run_id,
        successful_fetches.payload_hash,
        successful_fetches.endpoint,
        successful_fetches.clan_tag as fetch_clan_tag,
        successful_fetches.resource_tag,
        payload.body,
        successful_fetches.fetched_at,
        fetch_run.snapshot_at

    from successful_fetches
    cross join
        lateral (
            select fetch_runs.snapshot_at
            from fetch_runs
            where fetch_runs.run_id = successful_fetches.run_id
            offset 0
        ) as fetch_run
    cross join
        lateral (
            select payloads.body #> '{}' as body
            from payloads
            where payloads.payload_hash = successful_fetches.payload_hash
            offset 0
        ) as payload

)

select * from joined
