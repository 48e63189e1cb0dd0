{#-
    OVA, the offence component of ACE (DOMAIN.md "Derived metrics"), per
    member of a clan snapshot and window: per attack by the member in the
    clan's regular and CWL wars that ended in the window, (new stars -
    expected) / SD of the attack's bucket at as_of, weighted 0.75^(wars
    ago: 0 for the clan's latest war in the window), summed: ova_value,
    n = attacks. ova = robust z of ova_value across the snapshot's members
    (0 when MAD = 0 or no attack) x n / (n + 6). clan_war_count: the
    clan's wars in the window.

    Each value is kept twice: rounded as ACE stores it (ova, ova_value,
    ...) and ova_exact, unrounded, which int_member_ace_combined weighs
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

offence as materialized (

    select
        snapshot_id,
        metric_window,
        attacker_tag as player_tag,
        sum(
            decay * (new_stars - expected_new_stars) / sd_new_stars
        ) as ova_value,
        count(*)::integer as ova_n,
        count(*) filter (where is_global_fallback)::integer as ova_fallbacks

    from scored_attacks
    where is_our_clan_attack
    group by snapshot_id, metric_window, attacker_tag

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
        offence.ova_value,
        coalesce(offence.ova_n, 0) as ova_n,
        coalesce(offence.ova_fallbacks, 0) as ova_fallbacks

    from rosters
    left join window_war_counts
        on
            rosters.snapshot_id = window_war_counts.snapshot_id
            and rosters.metric_window = window_war_counts.metric_window
    left join offence
        on
            rosters.snapshot_id = offence.snapshot_id
            and rosters.metric_window = offence.metric_window
            and rosters.player_tag = offence.player_tag

),

robust_stats as materialized (

    {{ ace_robust_stats('values_ready', 'ova_value') }}

),

scored as (

    select
        values_ready.*,
        robust_stats.ova_value_median,
        robust_stats.ova_value_mad,
        {{ metrics_robust_z(
            'values_ready.ova_value',
            'robust_stats.ova_value_median',
            'robust_stats.ova_value_mad'
        ) }} as ova_value_z,
        {{ metrics_shrink('values_ready.ova_n', 6) }} as ova_shrink

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
        {{ metrics_round('ova_value_z * ova_shrink') }} as ova,
        {{ metrics_round('ova_shrink') }} as ova_shrink,
        ova_value_z * ova_shrink as ova_exact,

        -- numbers: inputs and their robust statistics
        clan_war_count,
        ova_n,
        ova_fallbacks,
        {{ metrics_round('ova_value') }} as ova_value,
        {{ metrics_round('ova_value_median') }} as ova_value_median,
        {{ metrics_round('ova_value_mad') }} as ova_value_mad,
        {{ metrics_round('ova_value_z') }} as ova_value_z,

        -- timestamps
        window_start_at,
        snapshot_at

    from scored

)

select * from final
