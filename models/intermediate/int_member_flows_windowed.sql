{#-
    One row per member per clan snapshot (as_of = snapshot_at): the flow
    metrics over the windows 7d (as_of - 7 days, as_of], 30d (as_of - 30
    days, as_of] and season (season start, as_of], the season starting at
    the last season end (last Monday of the month, 05:00 UTC, from the
    game_calendar seed); and tenure at as_of.

    - donations given / received: the sum of the reset-aware deltas of
      int_member_snapshots_diffed observed at the member's snapshots in the
      window (in this clan); observations count the deltas (snapshot pairs);
    - active days: the number of distinct days d (0 = the 24 hours up to
      as_of, 1 = the 24 hours before, ...) inside the window with an active
      snapshot (at most 7 for 7d, 30 for 30d);
    - last_active_at: the latest active snapshot up to as_of (any window);
    - tenure: days from the start of the stint holding as_of
      (membership_stints.joined_at) to as_of; total tenure sums over the
      stints started by as_of the days from joined_at to
      least(last_seen_at, as_of).

    Incremental (delete+insert on snapshot_id, player_tag): only the clan's
    snapshots newer than the latest stored one; the deltas are read from
    the earliest window start of the batch (30 days or the season, at most
    35 days) on the (clan_tag, snapshot_at) index, so the cost of a new
    snapshot does not grow with the history.

    Planning: the aggregating CTEs are `materialized` and the table is
    analyzed after a build that grew it by > 10 % (post_hook analyze_if_grown:
    a routine build skips it). Right after a load the planner's
    statistics are stale (a batch of new runs looks like a few rows) and it
    would re-run an inlined aggregate inside a nested loop once per row.
-#}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['snapshot_id', 'player_tag'],
        on_schema_change='fail',
        post_hook='{{ analyze_if_grown() }}',
        indexes=[
            {'columns': ['snapshot_id', 'player_tag'], 'unique': True},
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
        new_snapshots.snapshot_at - interval '7 days' as window_7d_start_at,
        new_snapshots.snapshot_at - interval '30 days' as window_30d_start_at,
        {{ metrics_season_start('new_snapshots.snapshot_at') }}
            as window_season_start_at

    from new_snapshots
    cross join game_calendar

),

read_bounds as (

    select
        clan_tag,
        least(
            min(window_30d_start_at), min(window_season_start_at)
        ) as read_from_at,
        max(snapshot_at) as read_to_at

    from snapshot_windows
    group by clan_tag

),

snapshot_deltas as (

    select member_deltas.*
    from {{ ref('int_member_snapshots_diffed') }} as member_deltas
    inner join read_bounds
        on
            member_deltas.clan_tag = read_bounds.clan_tag
            and member_deltas.snapshot_at > read_bounds.read_from_at
            and member_deltas.snapshot_at <= read_bounds.read_to_at

),

membership_stints as (

    select * from {{ ref('membership_stints') }}

),

roster as (

    select
        snapshot_deltas.snapshot_id,
        snapshot_deltas.clan_tag,
        snapshot_deltas.player_tag,
        snapshot_deltas.last_active_at,
        snapshot_windows.snapshot_at,
        snapshot_windows.window_7d_start_at,
        snapshot_windows.window_30d_start_at,
        snapshot_windows.window_season_start_at

    from snapshot_deltas
    inner join snapshot_windows
        on snapshot_deltas.snapshot_id = snapshot_windows.snapshot_id

),

history_in_windows as (

    select
        roster.snapshot_id,
        roster.player_tag,
        history.donations_delta,
        history.donations_received_delta,
        history.is_active,
        not history.is_stint_start as is_observation,
        history.is_donations_reset
        or history.is_donations_received_reset as is_reset,
        -- 0 = the 24 hours up to as_of, 1 = the 24 hours before, ...
        floor(
            {{ metrics_days_between(
                'roster.snapshot_at', 'history.snapshot_at'
            ) }}
        ) as day_index,
        history.snapshot_at > roster.window_7d_start_at as is_in_7d,
        history.snapshot_at > roster.window_30d_start_at as is_in_30d,
        history.snapshot_at > roster.window_season_start_at as is_in_season,
        history.snapshot_at

    from roster
    inner join snapshot_deltas as history
        on
            roster.clan_tag = history.clan_tag
            and roster.player_tag = history.player_tag
            and least(
                roster.window_30d_start_at, roster.window_season_start_at
            ) < history.snapshot_at
            and roster.snapshot_at >= history.snapshot_at

),

windowed as materialized (

    select
        snapshot_id,
        player_tag,
        coalesce(sum(donations_delta) filter (where is_in_7d), 0)::integer
            as donations_given_7d,
        coalesce(
            sum(donations_received_delta) filter (where is_in_7d), 0
        )::integer as donations_received_7d,
        count(*) filter (where is_in_7d and is_observation)::integer
            as donation_observations_7d,
        count(*) filter (where is_in_7d and is_reset)::integer
            as donation_resets_7d,
        count(distinct day_index) filter (
            where is_in_7d and is_active
        )::integer as active_days_7d,
        count(*) filter (where is_in_7d and is_active)::integer
            as active_snapshots_7d,
        coalesce(sum(donations_delta) filter (where is_in_30d), 0)::integer
            as donations_given_30d,
        coalesce(
            sum(donations_received_delta) filter (where is_in_30d), 0
        )::integer as donations_received_30d,
        count(*) filter (where is_in_30d and is_observation)::integer
            as donation_observations_30d,
        count(*) filter (where is_in_30d and is_reset)::integer
            as donation_resets_30d,
        count(distinct day_index) filter (
            where is_in_30d and is_active
        )::integer as active_days_30d,
        count(*) filter (where is_in_30d and is_active)::integer
            as active_snapshots_30d,
        coalesce(sum(donations_delta) filter (where is_in_season), 0)::integer
            as donations_given_season,
        coalesce(
            sum(donations_received_delta) filter (where is_in_season), 0
        )::integer as donations_received_season,
        count(*) filter (where is_in_season and is_observation)::integer
            as donation_observations_season,
        count(*) filter (where is_in_season and is_reset)::integer
            as donation_resets_season,
        count(distinct day_index) filter (
            where is_in_season and is_active
        )::integer as active_days_season,
        count(*) filter (where is_in_season and is_active)::integer
            as active_snapshots_season,
        max(snapshot_at) as latest_history_at

    from history_in_windows
    group by snapshot_id, player_tag

),

stints_to_date as materialized (

    select
        roster.snapshot_id,
        roster.player_tag,
        count(*)::integer as stint_count,
        max(stints.stint_number) filter (
            where stints.last_seen_at >= roster.snapshot_at
        ) as current_stint_number,
        min(stints.joined_at) filter (
            where stints.last_seen_at >= roster.snapshot_at
        ) as joined_at,
        bool_or(stints.is_initial_member) filter (
            where stints.stint_number = 1
        ) as is_initial_member,
        sum(
            {{ metrics_days_between(
                'least(stints.last_seen_at, roster.snapshot_at)',
                'stints.joined_at'
            ) }}
        ) as total_tenure_days,
        jsonb_agg(
            jsonb_build_object(
                'stint_number', stints.stint_number,
                'joined_at', stints.joined_at,
                'until_at', least(stints.last_seen_at, roster.snapshot_at)
            )
            order by stints.stint_number
        ) as stints

    from roster
    inner join membership_stints as stints
        on
            roster.clan_tag = stints.clan_tag
            and roster.player_tag = stints.player_tag
            and roster.snapshot_at >= stints.joined_at
    group by roster.snapshot_id, roster.player_tag

),

final as (

    select
        -- ids
        roster.snapshot_id,
        roster.clan_tag,
        roster.player_tag,

        -- properties
        stints_to_date.current_stint_number,
        coalesce(stints_to_date.is_initial_member, false)
            as is_initial_member,
        stints_to_date.stints,

        -- numbers
        windowed.donations_given_7d,
        windowed.donations_received_7d,
        windowed.donation_observations_7d,
        windowed.donation_resets_7d,
        windowed.active_days_7d,
        windowed.active_snapshots_7d,
        windowed.donations_given_30d,
        windowed.donations_received_30d,
        windowed.donation_observations_30d,
        windowed.donation_resets_30d,
        windowed.active_days_30d,
        windowed.active_snapshots_30d,
        windowed.donations_given_season,
        windowed.donations_received_season,
        windowed.donation_observations_season,
        windowed.donation_resets_season,
        windowed.active_days_season,
        windowed.active_snapshots_season,
        coalesce(stints_to_date.stint_count, 0) as stint_count,
        {{ metrics_round(metrics_days_between(
            'roster.snapshot_at', 'stints_to_date.joined_at'
        )) }} as tenure_days,
        {{ metrics_round('stints_to_date.total_tenure_days') }}
            as total_tenure_days,

        -- timestamps
        roster.window_7d_start_at,
        roster.window_30d_start_at,
        roster.window_season_start_at,
        stints_to_date.joined_at,
        roster.last_active_at,
        roster.snapshot_at

    from roster
    inner join windowed
        on
            roster.snapshot_id = windowed.snapshot_id
            and roster.player_tag = windowed.player_tag
    left join stints_to_date
        on
            roster.snapshot_id = stints_to_date.snapshot_id
            and roster.player_tag = stints_to_date.player_tag

)

select * from final
