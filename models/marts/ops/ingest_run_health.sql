{#-
    One row per ingestion run of one clan (ops.ingest_runs, kind 'ingest',
    not skipped): how the run went, from its checkpoint rows in
    ops.ingest_logs. The anomaly monitor (flows/monitor) validates it with
    Great Expectations.

    A view: the monitor reads it while the run is still going (status
    'running', after transform), so it must show the run's checkpoints as
    they are written. It reads ops only, through the ephemeral staging
    models stg_ops__ingest_runs and stg_ops__ingest_logs (no marts, no
    views of dbt's), so rebuilding or restoring a mart never drops it.

    duration_ms is the work of the run: fetch + land + transform (every
    attempt), known before the run closes; run_duration_ms is the whole
    run, NULL until it is closed.
-#}

{{ config(materialized='view') }}

with

runs as (

    select * from {{ ref('stg_ops__ingest_runs') }}
    where kind = 'ingest' and status <> 'skipped'

),

logs as (

    select * from {{ ref('stg_ops__ingest_logs') }}

),

phases as (

    select
        run_id,
        sum(duration_ms) filter (where phase = 'fetch') as fetch_ms,
        sum(duration_ms) filter (where phase = 'land') as land_ms,
        sum(duration_ms) filter (where phase = 'transform') as transform_ms,
        sum(duration_ms) filter (where phase = 'monitor') as monitor_ms,
        bool_or(phase = 'land' and status = 'succeeded') as is_landed,
        max(requests) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as requests,
        max(details_failed_requests) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as failed_requests,
        -- the members listed; before change-driven polling every listed member's profile
        -- was fetched, and only that count was kept
        max(coalesce(details_roster, details_members)) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as roster_size,
        max(coalesce(details_failed_players, 0)) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as failed_player_fetches,
        max(coalesce(details_dropped_requests, 0)) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as dropped_requests,
        max(coalesce(details_dropped_players, 0)) filter (
            where phase = 'fetch' and status = 'succeeded'
        ) as dropped_player_fetches,
        max(coalesce(details_quarantined_bodies, 0)) filter (
            where phase = 'land' and status = 'succeeded'
        ) as quarantined_bodies

    from logs
    where step is null
    group by run_id

),

member_steps as (

    select
        run_id,
        max(rows_changed) as members_changed

    from logs
    where
        phase = 'transform'
        and step = 'upsert_members'
        and status = 'succeeded'
    group by run_id

),

final as (

    select
        runs.run_id,
        runs.clan_tags[1] as clan_tag,
        runs.status,
        runs.trigger,
        coalesce(phases.is_landed, false) as is_landed,
        coalesce(phases.fetch_ms, 0)
        + coalesce(phases.land_ms, 0)
        + coalesce(phases.transform_ms, 0) as duration_ms,
        phases.fetch_ms,
        phases.land_ms,
        phases.transform_ms,
        phases.monitor_ms,
        runs.duration_ms as run_duration_ms,
        phases.requests,
        phases.failed_requests,
        phases.failed_player_fetches,
        phases.dropped_requests,
        phases.dropped_player_fetches,
        phases.quarantined_bodies,
        phases.roster_size,
        member_steps.members_changed,
        runs.started_at,
        runs.finished_at,
        runs.snapshot_at

    from runs
    left join phases on runs.run_id = phases.run_id
    left join member_steps on runs.run_id = member_steps.run_id

)

select * from final
