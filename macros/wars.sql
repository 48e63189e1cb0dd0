-- Shared steps of the war marts (war_attacks, war_members).

{#-
    The latest fetch of each war (int_war_fetches_deduplicated) that the
    calling mart must (re)build: in a full build every war; in an
    incremental build the wars whose latest fetch is not the one the mart
    holds, among those fetched within `wars_lookback_hours` (default 72) of
    the newest fetch it holds. `columns`: the columns of
    int_war_fetches_deduplicated the mart needs.

    A macro rather than an intermediate model: the filter reads the calling
    mart's own rows ({{ this }}), which an intermediate model cannot see.
-#}
{% macro war_latest_fetches(columns) -%}
    select
        {%- for column in columns %}
            latest.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}

    from {{ ref('int_war_fetches_deduplicated') }} as latest
    {% if is_incremental() %}
        where
            latest.fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(hours => {{ var('wars_lookback_hours', 72) }})
            and not exists (
                select 1
                from {{ this }} as stored
                where
                    stored.war_id = latest.war_id
                    and stored.fetch_id = latest.fetch_id
            )
    {% endif %}
{%- endmacro %}

{#-
    The rows of the staging model `staging_model` parsed from the fetches of
    the CTE `fetches` only: by fetch id, with the fetch time bound that
    reaches raw.fetch_log's index, so the JSON of no other fetch is parsed.
-#}
{% macro rows_of_fetches(staging_model, fetches='latest_fetches') -%}
    select * from {{ ref(staging_model) }}
    where
        fetch_id in (select {{ fetches }}.fetch_id from {{ fetches }})
        and fetched_at >= (
            select min({{ fetches }}.fetched_at) from {{ fetches }}
        )
{%- endmacro %}
