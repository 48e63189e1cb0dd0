-- Least privilege (issue 12): no job of the pipeline connects as a superuser
-- or as the owner (README "Least privilege", clash_pipeline.warehouse.access).
--   clash_ingest     fetch, land, run bookkeeping, alerts; the monitor reads
--                    the marts, so it is a member of clash_readonly
--   clash_transform  runs dbt: it owns what dbt creates, so it reads and
--                    writes the marts
--   clash_readonly   reads ops and the marts, writes nothing
-- Statements that need more than the migrating user may do (a non-superuser
-- owner that is not a member of the job roles) are skipped with a warning;
-- the README lists what the operator runs instead.

-- What clash_transform creates in marts (dbt's models, a published copy) is
-- readable by the readers, whichever step creates it.
do $defaults$
begin
    alter default privileges for role clash_transform in schema marts
        grant select on tables to clash_readonly;
exception when insufficient_privilege then
    raise warning 'least privilege: cannot set default privileges for clash_transform (%); '
        'run as a superuser: alter default privileges for role clash_transform in schema '
        'marts grant select on tables to clash_readonly', sqlerrm;
end
$defaults$;

-- ops tables of later migrations are readable by the readers.
alter default privileges in schema ops grant select on tables to clash_readonly;

do $membership$
begin
    if pg_has_role('clash_ingest', 'clash_readonly', 'member') then
        return;  -- the embedded database's bootstrap did it
    end if;
    grant clash_readonly to clash_ingest;
exception when insufficient_privilege then
    raise warning 'least privilege: cannot grant clash_readonly to clash_ingest (%); '
        'run it as a superuser so that the monitor can read the marts', sqlerrm;
end
$membership$;

-- dbt ran as the migrating user before: hand what it created to clash_transform,
-- which runs dbt from now on (with the embedded database the bootstrap did it).
do $handover$
declare
    item record;
begin
    if current_user = 'clash_transform' then
        return;
    end if;
    for item in
        select nspname from pg_namespace
        where nspowner = to_regrole(current_user)
          and nspname in ('staging', 'intermediate', 'snapshots')
    loop
        execute format('alter schema %I owner to clash_transform', item.nspname);
    end loop;
    for item in
        select c.oid::regclass as rel,
               case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                   else 'table' end as kind
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relowner = to_regrole(current_user)
          and c.relkind in ('r', 'p', 'v', 'm')
          and n.nspname in (
              'staging', 'intermediate', 'marts', 'reference', 'snapshots', 'ops_restore'
          )
    loop
        execute format('alter %s %s owner to clash_transform', item.kind, item.rel);
    end loop;
exception when insufficient_privilege then
    raise warning 'least privilege: cannot hand the dbt objects to clash_transform (%); '
        'as a superuser: alter the owner of the tables and views of the dbt schemas '
        'to clash_transform', sqlerrm;
end
$handover$;

-- Restore points belong to the transform job alone.
revoke insert, update, delete on ops.transform_builds, ops.transform_undo from clash_ingest;

-- dbt's seeds (reference data: unit caps, leagues, the game calendar) are read by
-- the readers too (the monitor checks town hall levels against them).
create schema if not exists reference;

do $reference$
begin
    grant usage, create on schema reference to clash_transform;
    grant usage on schema reference to clash_readonly;
    grant select on all tables in schema reference to clash_readonly;
    alter default privileges for role clash_transform in schema reference
        grant select on tables to clash_readonly;
exception when insufficient_privilege then
    raise warning 'least privilege: cannot grant the readers schema reference (%); run as a '
        'superuser: grant usage on schema reference to clash_readonly; alter default '
        'privileges for role clash_transform in schema reference grant select on tables '
        'to clash_readonly', sqlerrm;
end
$reference$;
