-- ops: what the pipeline did (runs, per-phase checkpoints) and what the
-- monitor found (alerts). Written by the orchestrator and the monitor.

create schema if not exists ops;

comment on schema ops is
    'Pipeline bookkeeping: ingestion runs, per-phase checkpoints, alerts.';

create table ops.ingest_runs (
    run_id uuid primary key,
    flow_run_id uuid,
    parent_run_id uuid references ops.ingest_runs (run_id),
    kind text not null default 'ingest'
        check (kind in ('ingest', 'fetch', 'backfill', 'build', 'monitor')),
    trigger text not null default 'cli'
        check (trigger in ('cli', 'schedule', 'demo', 'test', 'api')),
    clan_tags text[] not null default '{}',
    status text not null default 'running'
        check (status in ('running', 'succeeded', 'failed', 'skipped', 'partial')),
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    duration_ms integer,
    snapshot_at timestamptz,
    ingestion_version text not null,
    schema_version text not null,
    requests integer not null default 0,
    failed_requests integer not null default 0,
    retries integer not null default 0,
    throttled integer not null default 0,
    bytes_received bigint not null default 0,
    payloads_new integer not null default 0,
    bytes_stored bigint not null default 0,
    rows_changed integer,
    error jsonb,
    summary jsonb not null default '{}'::jsonb,
    constraint ingest_runs_finished_after_start
        check (finished_at is null or finished_at >= started_at)
);

comment on table ops.ingest_runs is
    'One row per pipeline run: clans, outcome, versions, request counters, '
    'and the error of a failed run (never the API token).';

create index ingest_runs_started_idx on ops.ingest_runs (started_at desc);
create index ingest_runs_clans_idx on ops.ingest_runs using gin (clan_tags);
create index ingest_runs_status_idx on ops.ingest_runs (status, started_at desc);

create table ops.ingest_logs (
    log_id bigint generated always as identity primary key,
    run_id uuid not null references ops.ingest_runs (run_id) on delete cascade,
    clan_tag text,
    phase text not null
        check (phase in ('fetch', 'land', 'transform', 'monitor')),
    step text,
    status text not null
        check (status in ('running', 'succeeded', 'failed', 'skipped', 'retrying')),
    attempt smallint not null default 1 check (attempt >= 1),
    started_at timestamptz not null,
    finished_at timestamptz,
    duration_ms integer,
    rows_in integer,
    rows_written integer,
    rows_changed integer,
    requests integer,
    retries integer,
    throttled integer,
    db_time_ms integer,
    error jsonb,
    details jsonb not null default '{}'::jsonb
);

comment on table ops.ingest_logs is
    'Checkpoint rows: one per phase (and per mart step of transform) and '
    'attempt of a run, with durations, row and request counts and errors.';

create index ingest_logs_run_idx on ops.ingest_logs (run_id, phase);
create index ingest_logs_clan_idx on ops.ingest_logs (clan_tag, started_at desc);

create table ops.alerts (
    alert_id bigint generated always as identity primary key,
    clan_tag text,
    check_name text not null,
    severity text not null default 'warning'
        check (severity in ('info', 'warning', 'critical')),
    status text not null default 'open'
        check (status in ('open', 'resolved')),
    summary text not null,
    details jsonb not null default '{}'::jsonb,
    observed_value double precision,
    threshold double precision,
    first_seen_at timestamptz not null default clock_timestamp(),
    last_seen_at timestamptz not null default clock_timestamp(),
    resolved_at timestamptz,
    occurrences integer not null default 1 check (occurrences >= 1),
    first_run_id uuid,
    last_run_id uuid,
    constraint alerts_resolved_has_time
        check ((status = 'resolved') = (resolved_at is not null))
);

comment on table ops.alerts is
    'Monitor findings with a lifecycle: open, still firing (last_seen_at, '
    'occurrences), resolved when the check passes again.';

-- At most one open alert per clan and check.
create unique index alerts_one_open_per_check
    on ops.alerts (coalesce(clan_tag, ''), check_name)
    where status = 'open';
create index alerts_status_idx on ops.alerts (status, last_seen_at desc);
