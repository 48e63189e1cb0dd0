-- raw: everything the Clash API answered, kept so that every mart can be rebuilt.
-- Owned by the Python landing code (not dbt). Append-only.
--
-- payloads   content-addressed bodies: one row per distinct response body
--            (sha256 of its canonical JSON), so an unchanged player costs a
--            fetch_log row, not another 30 KB of JSON.
-- fetch_runs one row per landed run: a run's rows become visible together,
--            in the transaction that inserts this row.
-- fetch_log  one row per request (successes and errors; errors never become
--            payloads).

create schema if not exists raw;

comment on schema raw is
    'Landing zone: every Clash API response, content-addressed; owned by the '
    'landing code, read by dbt staging models only.';

create table raw.payloads (
    payload_hash text primary key
        check (payload_hash ~ '^[0-9a-f]{64}$'),
    body jsonb not null,
    byte_size integer not null check (byte_size >= 0),
    first_seen_at timestamptz not null default now()
);

comment on table raw.payloads is
    'Distinct API response bodies, keyed by sha256 of the canonical JSON '
    '(sorted keys, no insignificant whitespace).';

create table raw.fetch_runs (
    run_id uuid primary key,
    source text not null
        check (source in ('api', 'simulator', 'backfill')),
    clan_tags text[] not null default '{}',
    started_at timestamptz not null,
    snapshot_at timestamptz not null,
    landed_at timestamptz not null default clock_timestamp(),
    requests integer not null default 0,
    failed_requests integer not null default 0,
    payloads_new integer not null default 0,
    bytes_received bigint not null default 0,
    bytes_new bigint not null default 0
);

comment on table raw.fetch_runs is
    'One row per landed fetch or backfill run; snapshot_at is the time the '
    'data describes (the clan fetch time).';

create table raw.fetch_log (
    fetch_id bigint generated always as identity primary key,
    run_id uuid not null references raw.fetch_runs (run_id),
    clan_tag text,
    endpoint text not null
        check (endpoint in (
            'clan', 'clan_members', 'player', 'warlog', 'currentwar',
            'leaguegroup', 'cwl_war', 'capitalraidseasons', 'leaguetiers',
            'leagues'
        )),
    resource_tag text,
    request_path text not null,
    requested_at timestamptz not null,
    fetched_at timestamptz not null,
    http_status smallint,
    error_reason text,
    error_message text,
    duration_ms integer,
    attempts smallint not null default 1,
    retries smallint not null default 0,
    throttled smallint not null default 0,
    max_age_seconds integer,
    payload_hash text references raw.payloads (payload_hash),
    source_file text,
    constraint fetch_log_payload_only_on_success
        check (payload_hash is null or http_status = 200)
);

comment on table raw.fetch_log is
    'One row per API request (or backfilled file): endpoint, tag, status, '
    'timing, attempts, Cache-Control max-age and the payload it returned.';

create index fetch_log_run_idx on raw.fetch_log (run_id);
create index fetch_log_endpoint_tag_idx
    on raw.fetch_log (endpoint, resource_tag, fetched_at);
create index fetch_log_clan_idx on raw.fetch_log (clan_tag, fetched_at);
create index fetch_log_payload_idx on raw.fetch_log (payload_hash);
create index fetch_runs_snapshot_idx on raw.fetch_runs (snapshot_at);
