-- Shared steps of the ACE models (models/intermediate/ace). Each returns a
-- SELECT to use as a CTE's body; the models hold the formulas.

{#-
    The clan's regular and CWL wars that ended in each window of the batch
    `rosters` (a CTE of int_member_ace_windows_listed rows), 0 wars ago = the
    latest. Wars are read for the batch's span only, through the war mart's
    clan/time index.
-#}
{% macro ace_window_wars(rosters) -%}
    with

    snapshot_windows as (

        select distinct
            snapshot_id,
            clan_tag,
            metric_window,
            window_start_at,
            snapshot_at

        from {{ rosters }}

    ),

    read_bounds as (

        select
            clan_tag,
            min(window_start_at) as read_from_at,
            max(snapshot_at) as read_to_at

        from snapshot_windows
        group by clan_tag

    ),

    wars as (

        select batch_wars.*
        from {{ ref('wars') }} as batch_wars
        inner join read_bounds
            on
                batch_wars.clan_tag = read_bounds.clan_tag
                and batch_wars.end_at > read_bounds.read_from_at
                and batch_wars.end_at <= read_bounds.read_to_at
        where batch_wars.war_type in ('regular', 'cwl')

    )

    select
        snapshot_windows.snapshot_id,
        snapshot_windows.metric_window,
        snapshot_windows.snapshot_at,
        wars.war_id,
        row_number() over (
            partition by
                snapshot_windows.snapshot_id, snapshot_windows.metric_window
            order by wars.end_at desc, wars.war_id desc
        ) - 1 as wars_ago

    from snapshot_windows
    inner join wars
        on
            snapshot_windows.clan_tag = wars.clan_tag
            and snapshot_windows.window_start_at < wars.end_at
            and snapshot_windows.snapshot_at >= wars.end_at
{%- endmacro %}

{#-
    Every attack of the `window_wars` (ace_window_wars), both directions,
    with its decay 0.75^(wars ago) and the expected new stars and SD of its
    bucket at as_of (int_star_baselines_accumulated; the global bucket when
    the bucket has no data). OVA scores our attacks, DVA the attacks on us.
-#}
{% macro ace_scored_attacks(window_wars) -%}
    with

    war_attacks as (

        select * from {{ ref('war_attacks') }}
        where
            war_id = any(
                array(select distinct {{ window_wars }}.war_id
                    from {{ window_wars }})
            )

    ),

    star_baselines as (

        select * from {{ ref('int_star_baselines_accumulated') }}

    )

    select
        {{ window_wars }}.snapshot_id,
        {{ window_wars }}.metric_window,
        {{ window_wars }}.wars_ago,
        war_attacks.is_our_clan_attack,
        war_attacks.attacker_tag,
        war_attacks.defender_tag,
        war_attacks.new_stars,
        power(0.75, {{ window_wars }}.wars_ago) as decay,
        coalesce(bucket.mean_new_stars, global.mean_new_stars)
            as expected_new_stars,
        coalesce(bucket.sd_floored, global.sd_floored) as sd_new_stars,
        bucket.bucket_key is null as is_global_fallback

    from {{ window_wars }}
    inner join war_attacks
        on {{ window_wars }}.war_id = war_attacks.war_id
    left join star_baselines as bucket
        on
            not bucket.is_global
            and bucket.town_hall_difference = {{ metrics_clamp(
                'war_attacks.town_hall_difference', -3, 3
            ) }}
            and war_attacks.previous_best_stars = bucket.previous_best_stars
            and {{ window_wars }}.snapshot_at >= bucket.valid_from_at
            and (
                bucket.valid_to_at is null
                or {{ window_wars }}.snapshot_at < bucket.valid_to_at
            )
    left join star_baselines as global
        on
            global.is_global
            and {{ window_wars }}.snapshot_at >= global.valid_from_at
            and (
                global.valid_to_at is null
                or {{ window_wars }}.snapshot_at < global.valid_to_at
            )
{%- endmacro %}

{#-
    Robust statistics of `column` of the CTE `values` per snapshot and
    window, over the members with a value: the median and the median
    absolute deviation (MAD) from it, as `<column>_median`, `<column>_mad`.
    Values are compared as float8, as one input list of all components was.
-#}
{% macro ace_robust_stats(values, column) -%}
    with

    long_values as (

        select
            snapshot_id,
            metric_window,
            {{ column }}::float8 as input_value

        from {{ values }}
        where {{ column }} is not null

    ),

    medians as materialized (

        select
            snapshot_id,
            metric_window,
            percentile_cont(0.5) within group (order by input_value) as median

        from long_values
        group by snapshot_id, metric_window

    )

    select
        long_values.snapshot_id,
        long_values.metric_window,
        medians.median as {{ column }}_median,
        percentile_cont(0.5) within group (
            order by abs(long_values.input_value - medians.median)
        ) as {{ column }}_mad

    from long_values
    inner join medians
        on
            long_values.snapshot_id = medians.snapshot_id
            and long_values.metric_window = medians.metric_window
    group by long_values.snapshot_id, long_values.metric_window, medians.median
{%- endmacro %}

{#-
    The ACE models' incremental batch: the rows of int_member_ace_windows_listed
    for the clan snapshots newer than the calling model's per-clan watermark
    (after_clan_watermark), read by snapshot id on its unique index.
-#}
{% macro ace_batch_rosters() -%}
    select * from {{ ref('int_member_ace_windows_listed') }}
    where
        snapshot_id = any(
            array(
                select roster_snapshots.snapshot_id
                from {{ ref('roster_snapshots') }} as roster_snapshots
                {{ after_clan_watermark('roster_snapshots') }}
            )
        )
{%- endmacro %}
