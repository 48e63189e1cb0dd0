-- Three group roles (NOLOGIN): grant them to the login users of each part.
--   clash_ingest     writes raw and ops (fetch, land, run bookkeeping, alerts)
--   clash_transform  reads raw and ops, creates and owns the dbt schemas
--   clash_readonly   reads ops and the marts (API, dashboard, analysts)
-- Roles are cluster-wide, so creation is guarded: several databases on one
-- server can each apply this migration.

do $roles$
begin
    if not exists (select from pg_roles where rolname = 'clash_ingest') then
        create role clash_ingest nologin;
    end if;
    if not exists (select from pg_roles where rolname = 'clash_transform') then
        create role clash_transform nologin;
    end if;
    if not exists (select from pg_roles where rolname = 'clash_readonly') then
        create role clash_readonly nologin;
    end if;
end
$roles$;

do $database$
begin
    execute format(
        'grant connect on database %I to clash_ingest, clash_transform, clash_readonly',
        current_database()
    );
    -- dbt creates its own schemas (staging, intermediate, marts).
    execute format(
        'grant create on database %I to clash_transform', current_database()
    );
end
$database$;

grant usage on schema raw, ops to clash_ingest, clash_transform;
grant usage on schema ops to clash_readonly;

grant select, insert on all tables in schema raw to clash_ingest;
grant select, insert, update on
    ops.ingest_runs, ops.ingest_logs, ops.alerts
    to clash_ingest;
grant select on ops.schema_migrations to clash_ingest;
grant usage, select on all sequences in schema raw, ops to clash_ingest;

grant select on all tables in schema raw, ops to clash_transform;

grant select on all tables in schema ops to clash_readonly;
