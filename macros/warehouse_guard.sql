-- What keeps a hand-run dbt from damaging the warehouse (dbt_project.yml's
-- on-run-start hook and every incremental model's on_schema_change).

{#-
    on-run-start: a dbt command that writes the warehouse (build, run, seed,
    snapshot, clone, retry) runs only through clash-pipeline, which sets
    CLASH_DBT_MANAGED=1 for its own invocations
    (src/clash_pipeline/transform/dbt.py). clash-pipeline builds under the
    warehouse lock (src/clash_pipeline/warehouse/locks.py), inside a restore
    point, and publishes marts_build to marts; a plain `dbt build` would do
    none of that (readers would not see it, and during a pipeline run it would
    write into that run's build, which its roll back or publish then gets
    wrong).

    Why not take the lock here: dbt runs this hook on its "master" connection
    and closes it right after the hooks (dbt-adapters' release() always
    closes), and every model runs on a connection of its own, so a session
    lock taken here is gone before the first model starts
    (tests/test_analysts.py proves it with pg_locks). So plain dbt is refused,
    and `clash-pipeline dbt <command> ...` holds the lock for the whole run.

    Reading commands (test, compile, show, docs generate, ...) pass: they
    change nothing that readers read.
-#}
{% macro warehouse_guard() -%}
    {%- set command = flags.WHICH -%}
    {%- set writes = command in ('build', 'run', 'seed', 'snapshot', 'clone', 'retry') -%}
    {%- if execute and writes and env_var('CLASH_DBT_MANAGED', '') != '1' -%}
        {%- set busy = run_query(warehouse_lock_held_sql()).columns[0].values()[0] -%}
        {%- set now = (
            'a pipeline run is building the warehouse right now (it holds the '
            ~ 'warehouse lock); ' if busy else ''
        ) -%}
        {{ exceptions.raise_compiler_error(
            now ~ 'plain `dbt ' ~ command ~ '` would write marts_build outside '
            ~ "the pipeline's warehouse lock, restore point and publish step. "
            ~ 'Run `uv run clash-pipeline dbt ' ~ command ~ ' ...` with the same '
            ~ 'arguments instead: it waits for a running pipeline build, then '
            ~ 'builds and publishes yours to marts.'
        ) }}
    {%- endif -%}
    select 'warehouse guard: ok' as warehouse_guard
{%- endmacro %}

{#-
    Whether some session holds the warehouse lock: the two-integer advisory
    lock WAREHOUSE_LOCK_KEY of src/clash_pipeline/warehouse/locks.py, i.e.
    (int of b"CoCp" + 1, 0); pg_locks shows it as classid, objid, objsubid 2.
-#}
{% macro warehouse_lock_held_sql() -%}
    select exists (
        select from pg_catalog.pg_locks
        where
            locktype = 'advisory'
            and classid = 1131365233
            and objid = 0
            and objsubid = 2
            and granted
    ) as held
{%- endmacro %}

{#-
    The project's on_schema_change policy is `fail` (dbt_project.yml): when an
    incremental model's columns differ from its table's, an incremental build
    could only leave the old rows without the new columns (append or sync) or
    keep a removed column's stale values (append); a rebuild from raw gives
    every row its values. This override of dbt's dispatched macro only
    rewords the failure so that it says what to run; other policies go to
    dbt's own macro.
-#}
{% macro postgres__process_schema_changes(
    on_schema_change, source_relation, target_relation
) -%}
    {%- if on_schema_change != 'fail' -%}
        {{ return(dbt.default__process_schema_changes(
            on_schema_change, source_relation, target_relation
        )) }}
    {%- endif -%}
    {%- set changes = check_for_schema_changes(source_relation, target_relation) -%}
    {%- if changes['schema_changed'] -%}
        {%- set parts = [] -%}
        {%- if changes['source_not_in_target'] -%}
            {%- do parts.append('added: ' ~ (
                changes['source_not_in_target'] | map(attribute='name') | join(', ')
            )) -%}
        {%- endif -%}
        {%- if changes['target_not_in_source'] -%}
            {%- do parts.append('removed: ' ~ (
                changes['target_not_in_source'] | map(attribute='name') | join(', ')
            )) -%}
        {%- endif -%}
        {%- if changes['new_target_types'] -%}
            {%- do parts.append('type changed: ' ~ (
                changes['new_target_types'] | map(attribute='column_name') | join(', ')
            )) -%}
        {%- endif -%}
        {{ exceptions.raise_compiler_error(
            'the columns of ' ~ model.name ~ ' changed (' ~ (parts | join('; '))
            ~ '): run `uv run clash-pipeline build --full-refresh --select '
            ~ model.name ~ '` to rebuild it from raw and publish it '
            ~ '(incrementally, old rows would miss new columns or keep removed ones)'
        ) }}
    {%- endif -%}
    {{ return(changes['source_columns']) }}
{%- endmacro %}
