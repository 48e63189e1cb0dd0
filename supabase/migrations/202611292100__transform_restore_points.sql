-- Restore points for the transform phase: a failed dbt build leaves every mart
-- as it was before the run.
--
-- dbt on PostgreSQL commits model by model, so a build that fails halfway has
-- already written the models before the failure. The orchestrator therefore
-- opens a restore point before each build (ops.transform_builds) and, if the
-- build or a later phase of the run fails, puts every relation back:
--
--   incremental models  statement-level triggers (installed by the
--                       orchestrator on the dbt-owned tables) copy the rows a
--                       build deletes or inserts into ops.transform_undo, in
--                       the same transaction as the change. Cost: the rows the
--                       build changes, nothing else.
--   table models        dbt replaces them whole; their previous content is
--                       copied to schema ops_restore before the build (the
--                       same order of work as dbt's own rebuild).
--
-- The triggers only record while the session variable clash.transform_build
-- holds a build id; the orchestrator sets it for dbt's connections only, so a
-- manual `dbt build` is not recorded.

create schema if not exists ops;
create schema if not exists ops_restore;

comment on schema ops_restore is
    'Copies of table models taken before a pipeline dbt build, dropped when '
    'the build is published or rolled back.';

create table ops.transform_builds (
    build_id uuid primary key,
    run_ids uuid[] not null default '{}',
    clan_tags text[] not null default '{}',
    scope text not null check (scope in ('full', 'incremental')),
    project_hash text not null,
    status text not null default 'running'
        check (status in ('running', 'published', 'rolled_back')),
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    relations jsonb not null default '[]'::jsonb,
    error jsonb
);

comment on table ops.transform_builds is
    'One row per pipeline dbt build: its restore plan (relations, how each is '
    'restored) and whether it was published or rolled back.';

create index transform_builds_status_idx
    on ops.transform_builds (status, started_at desc);

create table ops.transform_undo (
    undo_id bigint generated always as identity primary key,
    build_id uuid not null,
    relation text not null,
    op char(1) not null check (op in ('I', 'D')),
    row_data jsonb not null
);

comment on table ops.transform_undo is
    'Rows a running dbt build inserted (I) or deleted (D), per relation; '
    'emptied when the build is published or rolled back.';

create index transform_undo_build_idx on ops.transform_undo (build_id, relation);

-- Runs as its owner so that whichever login runs dbt can record its changes.
create function ops.capture_transform_undo() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $capture$
declare
    build text := nullif(current_setting('clash.transform_build', true), '');
    relation text := format('%I.%I', tg_table_schema, tg_table_name);
begin
    if build is null then
        return null;
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
        insert into ops.transform_undo (build_id, relation, op, row_data)
        select build::uuid, relation, 'D', to_jsonb(old_rows)
        from undo_old_rows as old_rows;
    end if;
    if tg_op in ('UPDATE', 'INSERT') then
        insert into ops.transform_undo (build_id, relation, op, row_data)
        select build::uuid, relation, 'I', to_jsonb(new_rows)
        from undo_new_rows as new_rows;
    end if;
    return null;
end
$capture$;

comment on function ops.capture_transform_undo() is
    'Statement trigger of dbt-owned tables: records changed rows of the '
    'pipeline build named by clash.transform_build in ops.transform_undo.';

grant select, insert, update, delete on ops.transform_builds, ops.transform_undo
    to clash_ingest, clash_transform;
grant usage, select on all sequences in schema ops to clash_ingest, clash_transform;
grant usage, create on schema ops_restore to clash_transform;
grant select on ops.transform_builds to clash_readonly;
