{#-
    Capital raid weekends of the clan that ended in each ACE window (those
    fetched with their member list), per member of a clan snapshot: the
    weekends the member raided, or was in the clan for (membership_stints)
    without raiding (0 attacks of the weekend's base attack limit), with
    attacks used and allowed, loot, finishers and one-hits. PAR counts the
    weekends and attacks; CAP scores the loot and hits. Every member of the
    roster has a row (0 without a weekend).

    Point in time: a weekend counts at a snapshot only once a run at or
    before it saw the weekend ended (int_capital_raid_endings_observed).

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    the clan snapshots newer than this model's per-clan watermark
    (after_clan_watermark), whose members are read from
    int_member_ace_windows_listed by snapshot id; raid weekends are read
    for the batch's windows through the marts' clan/time and raid season
    indexes.
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

snapshot_windows as (

    select distinct
        snapshot_id,
        clan_tag,
        metric_window,
        window_start_at,
        snapshot_at

    from rosters

),

read_bounds as (

    select
        clan_tag,
        min(window_start_at) as read_from_at,
        max(snapshot_at) as read_to_at

    from snapshot_windows
    group by clan_tag

),

capital_raid_seasons as (

    select
        batch_raids.*,
        raid_endings.ended_seen_at
    from {{ ref('capital_raid_seasons') }} as batch_raids
    inner join read_bounds
        on
            batch_raids.clan_tag = read_bounds.clan_tag
            and batch_raids.end_at > read_bounds.read_from_at
            and batch_raids.end_at <= read_bounds.read_to_at
    inner join {{ ref('int_capital_raid_endings_observed') }} as raid_endings
        on batch_raids.raid_season_id = raid_endings.raid_season_id
    where raid_endings.ended_seen_at <= read_bounds.read_to_at

),

capital_raid_members as (

    select * from {{ ref('capital_raid_members') }}
    where
        raid_season_id = any(
            array(
                select capital_raid_seasons.raid_season_id
                from capital_raid_seasons
            )
        )

),

membership_stints as (

    select * from {{ ref('membership_stints') }}

),

-- the base attack limit of each weekend with a member list
raid_limits as materialized (

    select
        raid_season_id,
        max(attack_limit) as base_attack_limit

    from capital_raid_members
    group by raid_season_id

),

window_raids as (

    select
        snapshot_windows.snapshot_id,
        snapshot_windows.metric_window,
        capital_raid_seasons.raid_season_id,
        capital_raid_seasons.start_at,
        capital_raid_seasons.end_at,
        raid_limits.base_attack_limit

    from snapshot_windows
    inner join capital_raid_seasons
        on
            snapshot_windows.clan_tag = capital_raid_seasons.clan_tag
            and snapshot_windows.window_start_at < capital_raid_seasons.end_at
            and snapshot_windows.snapshot_at >= capital_raid_seasons.end_at
            -- point in time: only weekends seen ended by the snapshot, whose
            -- data (the marts' latest fetch) is final
            and snapshot_windows.snapshot_at
            >= capital_raid_seasons.ended_seen_at
    -- weekends fetched with their member list only
    inner join raid_limits
        on capital_raid_seasons.raid_season_id = raid_limits.raid_season_id

),

raid_opportunities as (

    select
        rosters.snapshot_id,
        rosters.metric_window,
        rosters.player_tag,
        window_raids.raid_season_id,
        coalesce(raiders.attacks, 0) as attacks,
        coalesce(raiders.attacks_allowed, window_raids.base_attack_limit)
            as attacks_allowed,
        coalesce(raiders.capital_resources_looted, 0) as looted,
        coalesce(raiders.finisher_count, 0) as finishers,
        coalesce(raiders.one_hit_count, 0) as one_hits

    from rosters
    inner join window_raids
        on
            rosters.snapshot_id = window_raids.snapshot_id
            and rosters.metric_window = window_raids.metric_window
    left join capital_raid_members as raiders
        on
            window_raids.raid_season_id = raiders.raid_season_id
            and rosters.player_tag = raiders.player_tag
    where
        raiders.player_tag is not null
        or exists (
            select 1
            from membership_stints
            where
                membership_stints.clan_tag = rosters.clan_tag
                and membership_stints.player_tag = rosters.player_tag
                and membership_stints.joined_at <= window_raids.end_at
                and coalesce(membership_stints.left_at, 'infinity')
                > window_raids.start_at
        )

),

capital_participation as materialized (

    select
        snapshot_id,
        metric_window,
        player_tag,
        count(*)::integer as raid_weekends,
        sum(attacks)::integer as capital_attacks,
        sum(attacks_allowed)::integer as capital_attacks_allowed,
        sum(looted)::bigint as capital_looted,
        sum(finishers)::integer as capital_finishers,
        sum(one_hits)::integer as capital_one_hits

    from raid_opportunities
    group by snapshot_id, metric_window, player_tag

),

final as (

    select
        -- ids
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,

        -- numbers
        coalesce(capital_participation.raid_weekends, 0) as raid_weekends,
        coalesce(capital_participation.capital_attacks, 0) as capital_attacks,
        coalesce(capital_participation.capital_attacks_allowed, 0)
            as capital_attacks_allowed,
        coalesce(capital_participation.capital_looted, 0) as capital_looted,
        coalesce(capital_participation.capital_finishers, 0)
            as capital_finishers,
        coalesce(capital_participation.capital_one_hits, 0)
            as capital_one_hits,

        -- timestamps
        rosters.window_start_at,
        rosters.snapshot_at

    from rosters
    left join capital_participation
        on
            rosters.snapshot_id = capital_participation.snapshot_id
            and rosters.metric_window = capital_participation.metric_window
            and rosters.player_tag = capital_participation.player_tag

)

select * from final
