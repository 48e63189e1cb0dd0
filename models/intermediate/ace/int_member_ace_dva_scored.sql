{#-
    DVA, the defence component of ACE (DOMAIN.md "Derived metrics"), per
    member of a clan snapshot and window: per attack on the member in the
    clan's regular and CWL wars that ended in the window, (expected - new
    stars conceded) / SD of the attack's bucket at as_of, weighted
    0.75^(wars ago), summed: dva_value, n = defences. dva = robust z of
    dva_value across the snapshot's members x n / (n + 4).

    Each value is kept twice: rounded as ACE stores it (dva, dva_value,
    ...) and dva_exact, unrounded, which int_member_ace_combined weighs
    into core.

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    the clan snapshots newer than this model's per-clan watermark
    (after_clan_watermark), whose members are read from
    int_member_ace_windows_listed by snapshot id; wars and their attacks
    are read for the batch's windows only. Aggregates are `materialized` and the table analyzed
    after a build that grew it by > 10 % (see int_member_snapshots_diffed).
-#}

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

window_wars as (

    {{ ace_window_wars('rosters') }}

),

window_war_counts as materialized (

    select
        snapshot_id,
        metric_window,
        count(*)::integer as clan_war_count

    from window_wars
    group by snapshot_id, metric_window

),

scored_attacks as (

    {{ ace_scored_attacks('window_wars') }}

),

defence as materialized (

    select
        snapshot_id,
        metric_window,
        defender_tag as player_tag,
        sum(
            decay * (expected_new_stars - new_stars) / sd_new_stars
        ) as dva_value,
        count(*)::integer as dva_n,
        count(*) filter (where is_global_fallback)::integer as dva_fallbacks

    from scored_attacks
    where not is_our_clan_attack
    group by snapshot_id, metric_window, defender_tag

),

values_ready as (

    select
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,
        rosters.window_start_at,
        rosters.snapshot_at,
        coalesce(window_war_counts.clan_war_count, 0) as clan_war_count,
        defence.dva_value,
        coalesce(defence.dva_n, 0) as dva_n,
        coalesce(defence.dva_fallbacks, 0) as dva_fallbacks

    from rosters
    left join window_war_counts
        on
            rosters.snapshot_id = window_war_counts.snapshot_id
            and rosters.metric_window = window_war_counts.metric_window
    left join defence
        on
            rosters.snapshot_id = defence.snapshot_id
            and rosters.metric_window = defence.metric_window
            and rosters.player_tag = defence.player_tag

),

robust_stats as materialized (

    {{ ace_robust_stats('values_ready', 'dva_value') }}

),

scored as (

    select
        values_ready.*,
        robust_stats.dva_value_median,
        robust_stats.dva_value_mad,
        {{ metrics_robust_z(
            'values_ready.dva_value',
            'robust_stats.dva_value_median',
            'robust_stats.dva_value_mad'
        ) }} as dva_value_z,
        {{ metrics_shrink('values_ready.dva_n', 4) }} as dva_shrink

    from values_ready
    left join robust_stats
        on
            values_ready.snapshot_id = robust_stats.snapshot_id
            and values_ready.metric_window = robust_stats.metric_window

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers: the component, rounded and exact
        {{ metrics_round('dva_value_z * dva_shrink') }} as dva,
        {{ metrics_round('dva_shrink') }} as dva_shrink,
        dva_value_z * dva_shrink as dva_exact,

        -- numbers: inputs and their robust statistics
        clan_war_count,
        dva_n,
        dva_fallbacks,
        {{ metrics_round('dva_value') }} as dva_value,
        {{ metrics_round('dva_value_median') }} as dva_value_median,
        {{ metrics_round('dva_value_mad') }} as dva_value_mad,
        {{ metrics_round('dva_value_z') }} as dva_value_z,

        -- timestamps
        window_start_at,
        snapshot_at

    from scored

)

select * from final
