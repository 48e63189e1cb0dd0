{#-
    One row per member per clan snapshot: what changed since the member's
    previous snapshot in the same stint (DOMAIN.md "Derived metrics"):

    - donation deltas: cur - prev when cur >= prev, else cur (the season
      counter was reset); 0 at a stint's first snapshot (a baseline: there
      is no earlier count in this clan to subtract);
    - activity: the activity fields that changed (name, attack and defence
      wins, war stars, capital contributions, battle-mode and builder base
      trophies, hero, pet and equipment levels, achievement values; ranked
      trophies within one tournament week; donations and donations received
      when their delta is positive, so a season reset alone is not
      activity). A (re-)join is activity too: only a player in the game can
      join. last_active_at carries the latest active snapshot forward.

    Profile fields come from the profile member_snapshot_stats uses (this
    run's, or carried from the member's earlier snapshot when the run has
    none). A carried profile equals the previous snapshot's, so it shows no
    change: activity is counted once, at the first snapshot whose fetched
    profile differs from the last one, never again for a carried copy.

    The member's previous snapshot in the stint is the clan's previous
    snapshot when the roster listed them there; otherwise this snapshot
    starts a stint (a join, or the clan's first snapshot).

    Incremental (delete+insert on snapshot_id, player_tag): a build takes
    the clan's snapshots newer than the latest one stored (per clan) and,
    per member of the batch, the member's latest stored row (one index
    probe), so a new snapshot reads one roster, its profiles and 50 stored
    rows whatever the history. Staging inputs are filtered by the profiles'
    fetch ids, which reach raw.fetch_log's primary key. Full refresh gives
    the same rows.

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
            {'columns': ['clan_tag', 'player_tag', 'snapshot_at']},
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
        roster_snapshots.run_id,
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_at

    from roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

member_snapshot_stats as (

    select * from {{ ref('member_snapshot_stats') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

-- the profiles the member rows use (fetched in the run or carried)
players as (

    select * from {{ ref('stg_coc__players') }}
    where
        fetch_id = any(
            array(
                select member_snapshot_stats.profile_fetch_id
                from member_snapshot_stats
                where member_snapshot_stats.profile_fetch_id is not null
            )
        )

),

player_achievements as (

    select * from {{ ref('stg_coc__player_achievements') }}
    where
        fetch_id = any(
            array(
                select member_snapshot_stats.profile_fetch_id
                from member_snapshot_stats
                where member_snapshot_stats.profile_fetch_id is not null
            )
        )

),

-- the clan's last snapshot before the batch (none on a full refresh)
batch_clans as (

    select
        clan_tag,
        min(snapshot_at) as first_new_snapshot_at

    from new_snapshots
    group by clan_tag

),

earlier_snapshots as materialized (

    select
        earlier.snapshot_id,
        earlier.clan_tag,
        earlier.snapshot_at

    from batch_clans
    cross join lateral (
        select
            roster_snapshots.snapshot_id,
            roster_snapshots.clan_tag,
            roster_snapshots.snapshot_at
        from roster_snapshots
        where
            roster_snapshots.clan_tag = batch_clans.clan_tag
            and roster_snapshots.snapshot_at < batch_clans.first_new_snapshot_at
        order by
            roster_snapshots.snapshot_at desc,
            roster_snapshots.snapshot_id desc
        limit 1
    ) as earlier

),

clan_sequence as materialized (

    select
        snapshot_id,
        lag(snapshot_id) over (
            partition by clan_tag order by snapshot_at, snapshot_id
        ) as previous_clan_snapshot_id

    from (
        select
            snapshot_id,
            clan_tag,
            snapshot_at
        from new_snapshots
        union all
        select
            snapshot_id,
            clan_tag,
            snapshot_at
        from earlier_snapshots
    ) as clan_snapshots

),

run_profiles as materialized (

    select
        fetch_id,
        attack_wins,
        defense_wins

    from players

),

achievement_hashes as materialized (

    select
        player_achievements.fetch_id,
        md5(
            string_agg(
                concat_ws(
                    '=',
                    player_achievements.village,
                    player_achievements.achievement_name,
                    player_achievements.value
                ),
                '|'
                order by
                    player_achievements.village,
                    player_achievements.achievement_name,
                    player_achievements.value
            )
        ) as achievements_hash

    from player_achievements
    inner join run_profiles
        on player_achievements.fetch_id = run_profiles.fetch_id
    group by player_achievements.fetch_id

),

batch_rows as (

    select
        member_snapshot_stats.snapshot_id,
        member_snapshot_stats.clan_tag,
        member_snapshot_stats.player_tag,
        member_snapshot_stats.donations,
        member_snapshot_stats.donations_received,
        member_snapshot_stats.ranked_trophies,
        {{ metrics_ranked_week('member_snapshot_stats.snapshot_at') }}
            as ranked_week,
        -- NULLs are stripped: a field is compared only when both snapshots
        -- have it (a member's first profile is not a change)
        jsonb_strip_nulls(
            jsonb_build_object(
                'name', member_snapshot_stats.name,
                'attack_wins', run_profiles.attack_wins,
                'defense_wins', run_profiles.defense_wins,
                'war_stars', member_snapshot_stats.war_stars,
                'capital_contributions',
                member_snapshot_stats.capital_contributions,
                'battle_mode_trophies',
                member_snapshot_stats.battle_mode_trophies,
                'builder_base_trophies',
                member_snapshot_stats.builder_base_trophies,
                'hero_levels',
                case
                    when member_snapshot_stats.has_profile
                        then jsonb_build_object(
                                'barbarian_king',
                                member_snapshot_stats.barbarian_king_level,
                                'archer_queen',
                                member_snapshot_stats.archer_queen_level,
                                'grand_warden',
                                member_snapshot_stats.grand_warden_level,
                                'royal_champion',
                                member_snapshot_stats.royal_champion_level,
                                'minion_prince',
                                member_snapshot_stats.minion_prince_level
                            )
                end,
                'pet_levels', member_snapshot_stats.pet_levels,
                'equipment_levels',
                member_snapshot_stats.equipment_flags -> 'owned',
                'achievements', achievement_hashes.achievements_hash
            )
        ) as activity_fields,
        null::timestamptz as last_active_at,
        member_snapshot_stats.snapshot_at,
        true as is_new

    from member_snapshot_stats
    cross join game_calendar
    left join run_profiles
        on member_snapshot_stats.profile_fetch_id = run_profiles.fetch_id
    left join achievement_hashes
        on run_profiles.fetch_id = achievement_hashes.fetch_id

),

{% if is_incremental() %}

-- each member's latest stored row in the clan: the previous snapshot of the
-- stint when it is the clan's previous snapshot, and last_active_at so far
    stored_rows as (

        select
            latest_row.snapshot_id,
            latest_row.clan_tag,
            latest_row.player_tag,
            latest_row.donations,
            latest_row.donations_received,
            latest_row.ranked_trophies,
            latest_row.ranked_week,
            latest_row.activity_fields,
            latest_row.last_active_at,
            latest_row.snapshot_at,
            false as is_new

        from (
            select distinct
                clan_tag,
                player_tag
            from batch_rows
        ) as batch_members
        cross join lateral (
            select existing.*
            from {{ this }} as existing
            where
                existing.clan_tag = batch_members.clan_tag
                and existing.player_tag = batch_members.player_tag
            order by existing.snapshot_at desc, existing.snapshot_id desc
            limit 1
        ) as latest_row

    ),

{% endif %}

member_rows as (

    select * from batch_rows
    {% if is_incremental() %}
        union all
        select * from stored_rows
    {% endif %}

),

sequenced as (

    select
        member_rows.*,
        clan_sequence.previous_clan_snapshot_id,
        lag(member_rows.snapshot_id) over member_history
            as previous_member_snapshot_id,
        lag(member_rows.snapshot_at) over member_history
            as previous_member_snapshot_at,
        lag(member_rows.donations) over member_history
            as previous_donations,
        lag(member_rows.donations_received) over member_history
            as previous_donations_received,
        lag(member_rows.ranked_trophies) over member_history
            as previous_ranked_trophies,
        lag(member_rows.ranked_week) over member_history
            as previous_ranked_week,
        lag(member_rows.activity_fields) over member_history
            as previous_activity_fields

    from member_rows
    left join clan_sequence
        on member_rows.snapshot_id = clan_sequence.snapshot_id
    window member_history as (
        partition by member_rows.clan_tag, member_rows.player_tag
        order by member_rows.snapshot_at, member_rows.snapshot_id
    )

),

paired as (

    select
        sequenced.*,
        coalesce(
            sequenced.previous_member_snapshot_id
            = sequenced.previous_clan_snapshot_id,
            false
        ) as has_previous,
        (
            sequenced.previous_clan_snapshot_id is not null
            and (
                sequenced.previous_member_snapshot_id
                is distinct from sequenced.previous_clan_snapshot_id
            )
        ) as is_join

    from sequenced
    where sequenced.is_new

),

deltas as (

    select
        paired.*,
        case
            when not paired.has_previous then 0
            when paired.donations >= paired.previous_donations
                then paired.donations - paired.previous_donations
            else coalesce(paired.donations, 0)
        end as donations_delta,
        case
            when not paired.has_previous then 0
            when
                paired.donations_received
                >= paired.previous_donations_received
                then
                    paired.donations_received
                    - paired.previous_donations_received
            else coalesce(paired.donations_received, 0)
        end as donations_received_delta,
        coalesce(
            paired.has_previous
            and paired.donations < paired.previous_donations,
            false
        ) as is_donations_reset,
        coalesce(
            paired.has_previous
            and paired.donations_received
            < paired.previous_donations_received,
            false
        ) as is_donations_received_reset,
        case
            when paired.has_previous
                then
                    paired.previous_member_snapshot_at
                    < {{ metrics_season_start('paired.snapshot_at') }}
            else false
        end as is_season_end_crossed

    from paired
    cross join game_calendar

),

changes as (

    select
        deltas.*,
        case
            when deltas.is_join then '["joined"]'::jsonb
            when not deltas.has_previous then '[]'::jsonb
            else
                coalesce(
                    (
                        select
                            jsonb_agg(
                                current_field.key order by current_field.key
                            )
                        from jsonb_each(deltas.activity_fields) as current_field
                        inner join
                            jsonb_each(deltas.previous_activity_fields)
                                as previous_field
                            on current_field.key = previous_field.key
                        where current_field.value <> previous_field.value
                    ),
                    '[]'::jsonb
                )
                || case
                    when deltas.donations_delta > 0
                        then '["donations"]'::jsonb
                    else '[]'::jsonb
                end
                || case
                    when deltas.donations_received_delta > 0
                        then '["donations_received"]'::jsonb
                    else '[]'::jsonb
                end
                -- ranked trophies reset every tournament week by themselves
                || case
                    when
                        deltas.ranked_week = deltas.previous_ranked_week
                        and deltas.ranked_trophies
                        <> deltas.previous_ranked_trophies
                        then '["ranked_trophies"]'::jsonb
                    else '[]'::jsonb
                end
        end as changed_fields

    from deltas

),

carried as (

    select
        changes.*,
        jsonb_array_length(changes.changed_fields) > 0 as is_active,
        {% if is_incremental() %}
            stored_rows.last_active_at as stored_last_active_at
        {% else %}
            null::timestamptz as stored_last_active_at
        {% endif %}

    from changes
    {% if is_incremental() %}
        left join stored_rows
            on
                changes.clan_tag = stored_rows.clan_tag
                and changes.player_tag = stored_rows.player_tag
    {% endif %}

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        case when has_previous then previous_member_snapshot_id end
            as previous_snapshot_id,

        -- properties
        not has_previous as is_stint_start,
        is_join,
        is_donations_reset,
        is_donations_received_reset,
        is_season_end_crossed,
        is_active,
        changed_fields,
        activity_fields,

        -- numbers
        donations,
        donations_received,
        donations_delta::integer as donations_delta,
        donations_received_delta::integer as donations_received_delta,
        ranked_trophies,
        ranked_week,

        -- timestamps
        case when has_previous then previous_member_snapshot_at end
            as previous_snapshot_at,
        snapshot_at,
        greatest(
            max(case when is_active then snapshot_at end) over (
                partition by clan_tag, player_tag
                order by snapshot_at, snapshot_id
                rows between unbounded preceding and current row
            ),
            stored_last_active_at
        ) as last_active_at

    from carried

)

select * from final
