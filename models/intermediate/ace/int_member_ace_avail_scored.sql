{#-
    AVAIL, the availability factor of ACE (DOMAIN.md "Derived metrics"),
    per member of a clan snapshot and window: clamp(0.85 + 0.15 min(1,
    active days in the last 30 / 26), 0.70, 1.05), the same for both
    windows (active days from int_member_flows_windowed).

    Kept rounded as ACE stores it and avail_exact unrounded (see
    int_member_ace_ova_scored). Incremental as int_member_ace_ova_scored.
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

scored as (

    select
        rosters.*,
        {{ metrics_clamp(
            '0.85 + 0.15 * least(1, rosters.avail_active_days / 26.0)',
            0.70, 1.05
        ) }} as avail_exact

    from rosters

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers
        {{ metrics_round('avail_exact') }} as avail,
        avail_exact,
        avail_active_days,

        -- timestamps
        window_start_at,
        snapshot_at

    from scored

)

select * from final
