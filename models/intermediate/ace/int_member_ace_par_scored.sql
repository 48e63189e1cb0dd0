{#-
    PAR, the participation component of ACE (DOMAIN.md "Derived metrics"),
    per member of a clan snapshot and window: 0.55 war attacks used /
    allowed + 0.30 capital attacks used / allowed + 0.15 full-participation
    streak share, ratios clamped to [0, 1.5]. Wars: the clan's regular and
    CWL wars that ended in the window whose line-up had the member.
    Capital: int_member_ace_raids_counted. Streak share: the member's
    latest wars in a row with every allowed attack used, divided by the
    member's wars. A term without opportunities adds 0; n = wars +
    weekends. par = robust z of par_value across the snapshot's members
    x n / (n + 0).

    Values kept rounded as ACE stores them and par_exact unrounded (see
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

window_wars as (

    {{ ace_window_wars('rosters') }}

),

war_members as (

    select
        war_id,
        player_tag,
        coalesce(attacks_used, 0) as attacks_used,
        coalesce(attacks_allowed, 0) as attacks_allowed

    from {{ ref('war_members') }}
    where
        war_id = any(array(select distinct window_wars.war_id from window_wars))
        and is_our_clan_member

),

raids as (

    select * from {{ ref('int_member_ace_raids_counted') }}
    where
        snapshot_id
        = any(array(select distinct rosters.snapshot_id from rosters))

),

lineups as (

    select
        window_wars.snapshot_id,
        window_wars.metric_window,
        war_members.player_tag,
        war_members.attacks_used,
        war_members.attacks_allowed,
        -- non-full wars so far, latest war first
        count(*) filter (
            where war_members.attacks_used < war_members.attacks_allowed
        ) over (
            partition by
                window_wars.snapshot_id,
                window_wars.metric_window,
                war_members.player_tag
            order by window_wars.wars_ago
            rows between unbounded preceding and current row
        ) as misses_so_far

    from window_wars
    inner join war_members
        on window_wars.war_id = war_members.war_id

),

war_participation as materialized (

    select
        snapshot_id,
        metric_window,
        player_tag,
        count(*)::integer as war_count,
        sum(attacks_used)::integer as war_attacks_used,
        sum(attacks_allowed)::integer as war_attacks_allowed,
        count(*) filter (where misses_so_far = 0)::integer as full_streak

    from lineups
    group by snapshot_id, metric_window, player_tag

),

inputs as (

    select
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,
        rosters.window_start_at,
        rosters.snapshot_at,
        coalesce(war_participation.war_count, 0) as par_wars,
        coalesce(war_participation.war_attacks_used, 0) as par_war_attacks_used,
        coalesce(war_participation.war_attacks_allowed, 0)
            as par_war_attacks_allowed,
        coalesce(war_participation.full_streak, 0) as par_full_streak,
        coalesce(raids.raid_weekends, 0) as par_raid_weekends,
        coalesce(raids.capital_attacks, 0) as par_capital_attacks_used,
        coalesce(raids.capital_attacks_allowed, 0)
            as par_capital_attacks_allowed

    from rosters
    left join war_participation
        on
            rosters.snapshot_id = war_participation.snapshot_id
            and rosters.metric_window = war_participation.metric_window
            and rosters.player_tag = war_participation.player_tag
    left join raids
        on
            rosters.snapshot_id = raids.snapshot_id
            and rosters.metric_window = raids.metric_window
            and rosters.player_tag = raids.player_tag

),

ratios as (

    select
        inputs.*,
        case
            when inputs.par_war_attacks_allowed > 0
                then {{ metrics_clamp(
                    'inputs.par_war_attacks_used::float8'
                    ~ ' / inputs.par_war_attacks_allowed',
                    0, 1.5
                ) }}
        end as par_war_ratio,
        case
            when inputs.par_capital_attacks_allowed > 0
                then {{ metrics_clamp(
                    'inputs.par_capital_attacks_used::float8'
                    ~ ' / inputs.par_capital_attacks_allowed',
                    0, 1.5
                ) }}
        end as par_capital_ratio,
        case
            when inputs.par_wars > 0
                then {{ metrics_clamp(
                    'inputs.par_full_streak::float8 / inputs.par_wars',
                    0, 1.5
                ) }}
        end as par_streak_share,
        inputs.par_wars + inputs.par_raid_weekends as par_n

    from inputs

),

values_ready as (

    select
        ratios.*,
        case
            when ratios.par_n > 0
                then
                    0.55 * coalesce(ratios.par_war_ratio, 0)
                    + 0.30 * coalesce(ratios.par_capital_ratio, 0)
                    + 0.15 * coalesce(ratios.par_streak_share, 0)
        end as par_value

    from ratios

),

robust_stats as materialized (

    {{ ace_robust_stats('values_ready', 'par_value') }}

),

scored as (

    select
        values_ready.*,
        robust_stats.par_value_median,
        robust_stats.par_value_mad,
        {{ metrics_robust_z(
            'values_ready.par_value',
            'robust_stats.par_value_median',
            'robust_stats.par_value_mad'
        ) }} as par_value_z,
        {{ metrics_shrink('values_ready.par_n', 0) }} as par_shrink

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
        {{ metrics_round('par_value_z * par_shrink') }} as par,
        {{ metrics_round('par_shrink') }} as par_shrink,
        par_value_z * par_shrink as par_exact,

        -- numbers: inputs and their robust statistics
        par_n,
        par_wars,
        par_war_attacks_used,
        par_war_attacks_allowed,
        par_full_streak,
        par_raid_weekends,
        par_capital_attacks_used,
        par_capital_attacks_allowed,
        {{ metrics_round('par_war_ratio') }} as par_war_ratio,
        {{ metrics_round('par_capital_ratio') }} as par_capital_ratio,
        {{ metrics_round('par_streak_share') }} as par_streak_share,
        {{ metrics_round('par_value') }} as par_value,
        {{ metrics_round('par_value_median') }} as par_value_median,
        {{ metrics_round('par_value_mad') }} as par_value_mad,
        {{ metrics_round('par_value_z') }} as par_value_z,

        -- timestamps
        window_start_at,
        snapshot_at

    from scored

)

select * from final
