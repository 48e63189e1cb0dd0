{#-
    One row per member of a clan snapshot per ACE window (30d: as_of - 30
    days, as_of]; season: (season start, as_of]): the window's bounds and
    the member's donations in it (int_member_flows_windowed), with the
    active days of the last 30 days that AVAIL uses. The roster every ACE
    component scores (models/intermediate/ace, DOMAIN.md "Derived metrics").

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    only the clan's snapshots newer than the latest stored one
    (after_clan_watermark); the components read their batch from here by
    snapshot id.
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

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }}

),

game_calendar as (

    select * from {{ ref('game_calendar') }}

),

new_snapshots as (

    select
        roster_snapshots.snapshot_id,
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_at

    from roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

snapshot_windows as (

    select
        new_snapshots.snapshot_id,
        new_snapshots.clan_tag,
        new_snapshots.snapshot_at,
        ace_windows.metric_window,
        case ace_windows.metric_window
            when '30d' then new_snapshots.snapshot_at - interval '30 days'
            else {{ metrics_season_start('new_snapshots.snapshot_at') }}
        end as window_start_at

    from new_snapshots
    cross join game_calendar
    cross join (
        values ('30d'), ('season')
    ) as ace_windows (metric_window)

),

member_windows as (

    select * from {{ ref('int_member_flows_windowed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

final as (

    select
        -- ids
        snapshot_windows.snapshot_id,
        snapshot_windows.clan_tag,
        member_windows.player_tag,
        snapshot_windows.metric_window,

        -- numbers
        case snapshot_windows.metric_window
            when '30d' then member_windows.donations_given_30d
            else member_windows.donations_given_season
        end as don_given,
        case snapshot_windows.metric_window
            when '30d' then member_windows.donations_received_30d
            else member_windows.donations_received_season
        end as don_received,
        case snapshot_windows.metric_window
            when '30d' then member_windows.donation_observations_30d
            else member_windows.donation_observations_season
        end as don_n,
        member_windows.active_days_30d as avail_active_days,

        -- timestamps
        snapshot_windows.window_start_at,
        snapshot_windows.snapshot_at

    from snapshot_windows
    inner join member_windows
        on snapshot_windows.snapshot_id = member_windows.snapshot_id

)

select * from final
