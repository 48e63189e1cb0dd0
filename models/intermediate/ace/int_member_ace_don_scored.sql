{#-
    DON, the donations component of ACE (DOMAIN.md "Derived metrics"), per
    member of a clan snapshot and window, over the window's donations
    (int_member_flows_windowed through int_member_ace_windows_listed):
    clamp(z(given - received) + 0.5 z(min(ratio, p99 of the roster's
    ratios)), -2.5, 2.5) x n / (n + 0), ratio = given / max(1, received),
    z robust across the snapshot's members, n = donation observations in
    the window (no observation: no value).

    Values kept rounded as ACE stores them and don_exact unrounded (see
    int_member_ace_ova_scored). Incremental as int_member_ace_ova_scored.
-#}

{%- set z_inputs = ['don_balance', 'don_ratio_capped'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['snapshot_id', 'player_tag', 'metric_window'],
        on_schema_change='fail',
        post_hook='{{ analyze_if_grown() }}',
        indexes=[
            {
                'columns': ['snapshot_id', 'player_tag', 'metric_window'],
                'unique': True,
            },
            {'columns': ['clan_tag', 'snapshot_at']},
        ],
    )
}}

with

new_snapshots as (

    select
        roster_snapshots.snapshot_id,
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_at

    from {{ ref('roster_snapshots') }} as roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

rosters as (

    select * from {{ ref('int_member_ace_windows_listed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

ratios as (

    select
        rosters.*,
        case
            when rosters.don_n > 0
                then (rosters.don_given - rosters.don_received)::float8
        end as don_balance,
        case
            when rosters.don_n > 0
                then
                    rosters.don_given::float8
                    / greatest(1, rosters.don_received)
        end as don_ratio

    from rosters

),

ratio_caps as materialized (

    select
        snapshot_id,
        metric_window,
        percentile_cont(0.99) within group (order by don_ratio)
            as don_ratio_p99

    from ratios
    where don_ratio is not null
    group by snapshot_id, metric_window

),

values_ready as (

    select
        ratios.*,
        ratio_caps.don_ratio_p99,
        -- least() ignores NULL: no ratio stays no ratio
        case
            when ratios.don_ratio is not null
                then least(ratios.don_ratio, ratio_caps.don_ratio_p99)
        end as don_ratio_capped

    from ratios
    left join ratio_caps
        on
            ratios.snapshot_id = ratio_caps.snapshot_id
            and ratios.metric_window = ratio_caps.metric_window

),

balance_stats as materialized (

    {{ ace_robust_stats('values_ready', 'don_balance') }}

),

ratio_stats as materialized (

    {{ ace_robust_stats('values_ready', 'don_ratio_capped') }}

),

scored as (

    select
        values_ready.*,
        balance_stats.don_balance_median,
        balance_stats.don_balance_mad,
        {{ metrics_robust_z(
            'values_ready.don_balance',
            'balance_stats.don_balance_median',
            'balance_stats.don_balance_mad'
        ) }} as don_balance_z,
        ratio_stats.don_ratio_capped_median,
        ratio_stats.don_ratio_capped_mad,
        {{ metrics_robust_z(
            'values_ready.don_ratio_capped',
            'ratio_stats.don_ratio_capped_median',
            'ratio_stats.don_ratio_capped_mad'
        ) }} as don_ratio_capped_z,
        {{ metrics_shrink('values_ready.don_n', 0) }} as don_shrink

    from values_ready
    left join balance_stats
        on
            values_ready.snapshot_id = balance_stats.snapshot_id
            and values_ready.metric_window = balance_stats.metric_window
    left join ratio_stats
        on
            values_ready.snapshot_id = ratio_stats.snapshot_id
            and values_ready.metric_window = ratio_stats.metric_window

),

components as (

    select
        scored.*,
        {{ metrics_clamp(
            'scored.don_balance_z + 0.5 * scored.don_ratio_capped_z',
            -2.5, 2.5
        ) }} * scored.don_shrink as don_exact

    from scored

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers: the component, rounded and exact
        {{ metrics_round('don_exact') }} as don,
        {{ metrics_round('don_shrink') }} as don_shrink,
        don_exact,

        -- numbers: inputs and their robust statistics
        don_n,
        don_given,
        don_received,
        {{ metrics_round('don_ratio') }} as don_ratio,
        {{ metrics_round('don_ratio_p99') }} as don_ratio_p99,
        {%- for column in z_inputs %}
            {{ metrics_round(column) }} as {{ column }},
            {{ metrics_round(column ~ '_median') }} as {{ column }}_median,
            {{ metrics_round(column ~ '_mad') }} as {{ column }}_mad,
            {{ metrics_round(column ~ '_z') }} as {{ column }}_z,
        {%- endfor %}

        -- timestamps
        window_start_at,
        snapshot_at

    from components

)

select * from final
