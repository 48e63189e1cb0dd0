-- Helpers of the incremental models.

{#-
    Post-hook of the incremental intermediate models: ANALYZE the model's
    table in the build's transaction when the build grew it by more than
    `share` of its rows (a first build, a full refresh, a catch-up over many
    new snapshots), so that the models built next in the same run plan with
    true row counts. A routine build (one new snapshot, well under 10 % of
    the rows) skips it: ANALYZE samples up to 30,000 rows, so its cost grows
    with the history, and autovacuum keeps the statistics within ~10 %.
-#}
{% macro analyze_if_grown(share=0.1) -%}
    do $analyze_if_grown$
    begin
        if (
            select
                relation.reltuples < 0
                or pg_stat_get_xact_tuples_inserted(relation.oid)
                > {{ share }} * relation.reltuples
            from pg_class as relation
            where relation.oid = '{{ this }}'::regclass
        ) then
            execute 'analyze {{ this }}';
        end if;
    end
    $analyze_if_grown$
{%- endmacro %}

{#-
    The incremental filter of the snapshot-driven models: in an incremental
    build, only the clan snapshots newer than the newest one this model has
    stored for the clan (a per-clan watermark; a clan it has never seen
    starts from the beginning). `alias` is the snapshots CTE being filtered,
    `stored_time` the model's own snapshot-time column. Renders nothing in a
    full build.
-#}
{% macro after_clan_watermark(alias, stored_time='snapshot_at') -%}
    {%- if is_incremental() %}
        where
            {{ alias }}.snapshot_at > coalesce(
                (
                    select max(existing.{{ stored_time }})
                    from {{ this }} as existing
                    where existing.clan_tag = {{ alias }}.clan_tag
                ),
                '-infinity'::timestamptz
            )
    {%- endif %}
{%- endmacro %}
