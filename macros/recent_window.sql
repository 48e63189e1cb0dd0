{#-
    The window of the data tests: the last `staging_test_days` days before
    the newest data (0: all history), never before now(). A warehouse built
    from simulated dates or from backfilled history has its newest data in
    the past; a window on the wall clock would test nothing there, and a
    clan whose data stopped months ago would have nothing tested.

    The anchor is the newest raw.fetch_runs.snapshot_at of each clan (runs of
    no clan: the newest of those), a small table with one row per landed run,
    so a window costs one scan of it, never a pass over a parsed view.

    Data tests name the window in their `where` config with the placeholder
    `__recent_window__` (configs are rendered without the project's macros;
    get_where_subquery below expands it when the test runs):

      __recent_window__                      rows whose run_id is one of the
                                             window's runs (the staging
                                             default, dbt_project.yml)
      __recent_window__(snapshot_at, clan_tag)
                                             rows whose snapshot_at is in
                                             their clan's window
      __recent_window__(first_seen_at)       rows within N days of the
                                             tested relation's newest value

    Singular tests call recent_window() directly.
-#}

{#- N, the window in days (dbt var staging_test_days, default 3). -#}
{% macro recent_window_days() -%}
    {{ return(var('staging_test_days', 3) | int) }}
{%- endmacro %}

{#- The runs of the window: each clan's runs whose snapshot_at is at most N
    days before that clan's newest run. An array, so that
    `run_id = any(...)` is a plain filter (an InitPlan): PostgreSQL pushes it
    into a staging view, down to raw.fetch_log's run_id index, before any
    JSON is parsed. -#}
{% macro recent_window_runs() -%}
    array(
        select recent_runs.run_id
        from (
            select
                fetch_runs.run_id,
                fetch_runs.snapshot_at,
                max(fetch_runs.snapshot_at)
                    over (partition by fetch_runs.clan_tags)
                    as newest_at
            from {{ source('coc', 'fetch_runs') }} as fetch_runs
        ) as recent_runs
        where
            recent_runs.snapshot_at
            >= recent_runs.newest_at
            - make_interval(days => {{ recent_window_days() }})
    )
{%- endmacro %}

{#- Each clan's window start: its newest snapshot_at - N days ('' for runs
    of no clan). -#}
{% macro recent_window_starts() -%}
    select
        coalesce(fetch_runs.clan_tags[1], '') as window_clan_tag,
        max(fetch_runs.snapshot_at)
        - make_interval(days => {{ recent_window_days() }}) as window_start
    from {{ source('coc', 'fetch_runs') }} as fetch_runs
    group by 1
{%- endmacro %}

{#- A boolean SQL expression: is the row of `alias` in the window?
    column: none (the row's run_id is a run of the window), or the row's
    time column; per: the clan column (the clan's window), or none with a
    column (within N days of the newest value of `relation`). -#}
{% macro recent_window(column=none, per=none, relation=none, alias=none) -%}
    {%- set prefix = (alias ~ '.') if alias else '' -%}
    {%- if recent_window_days() == 0 -%}
        true
    {%- elif column is none -%}
        {{ prefix }}run_id = any({{ recent_window_runs() }})
    {%- elif per is not none -%}
        {#- the first condition is a plain filter (an index range on the
            column); the second keeps each clan to its own window -#}
        ({{ prefix }}{{ column }} >= (
            select min(window_starts.window_start)
            from ({{ recent_window_starts() }}) as window_starts
        )
        and exists (
            select
            from ({{ recent_window_starts() }}) as window_starts
            where
                window_starts.window_clan_tag = coalesce({{ prefix }}{{ per }}, '')
                and {{ prefix }}{{ column }} >= window_starts.window_start
        ))
    {%- else -%}
        {%- if relation is none -%}
            {{ exceptions.raise_compiler_error(
                "recent_window('" ~ column ~ "') needs the relation whose newest "
                ~ column ~ " anchors the window (relation=...)"
            ) }}
        {%- endif -%}
        {{ prefix }}{{ column }} >= (
            select max(newest.{{ column }}) from {{ relation }} as newest
        ) - make_interval(days => {{ recent_window_days() }})
    {%- endif -%}
{%- endmacro %}

{#- A `where` config with its __recent_window__ placeholders expanded for
    the tested relation, read as `alias`. -#}
{% macro recent_window_expand(where, relation, alias) -%}
    {%- set pattern = '__recent_window__(?:\\(\\s*([a-z_][a-z0-9_]*)\\s*(?:,\\s*([a-z_][a-z0-9_]*)\\s*)?\\))?' -%}
    {%- set expanded = namespace(text='', done=0) -%}
    {%- for match in modules.re.finditer(pattern, where) -%}
        {%- set window = recent_window(
            column=match.group(1), per=match.group(2),
            relation=relation, alias=alias
        ) -%}
        {%- set expanded.text = expanded.text ~ where[expanded.done:match.start()] ~ window -%}
        {%- set expanded.done = match.end() -%}
    {%- endfor -%}
    {{ return(expanded.text ~ where[expanded.done:]) }}
{%- endmacro %}

{#- dbt's get_where_subquery (global_project macros/materializations/tests/
    where_subquery.sql), with the tested relation aliased `tested` and the
    __recent_window__ placeholders expanded. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} as tested
            where {{ recent_window_expand(where, relation, 'tested') }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
