{#-
    One row per member per clan snapshot: the roster item of the run joined
    to the member's latest profile (GET /players) at the snapshot, typed.

    Carry-forward: a run may lack a member's profile (the planner skips a
    member whose roster entry did not change; a fetch dropped after its
    retries). The member's row then carries the profile of their previous
    row in the clan (itself fetched or carried): profile_fetch_id and
    profile_fetched_at name the profile used, is_profile_carried tells it
    came from an earlier snapshot. Point in time: only the clan's snapshots
    at or before this one are looked at, never a later profile. The roster
    fields (name, role, leagues, town hall, XP, trophies, donations) are
    always the snapshot's own; only the profile-only columns carry (and the
    roster fields' fallback when the roster item lacks one). A member
    without any profile in the clan up to this snapshot has NULL profile
    columns and has_profile false.

    Incremental: a normal build takes only the snapshots newer than the
    latest one this table has for their clan (per clan, because runs of
    different clans land concurrently). The new snapshots' fetch and run ids
    are passed to every staging input as `= any(array(...))` filters, which
    PostgreSQL pushes through the views down to raw.fetch_log's indexes:
    one new snapshot parses one roster, its profiles and one current war,
    however long the history. first_seen_at, updated_at and the carried
    profile continue from the member's latest stored row (one probe of the
    (clan_tag, player_tag, snapshot_at) index per member, whatever the
    history), so the incremental history equals a full refresh.

    Snapshots older than the latest processed one of their clan (a backfill
    of earlier history) are not picked up: run --full-refresh after one.
-#}

{#- Hero levels and unit counts: 0 when absent from a fetched profile. -#}
{%- set profile_unit_columns = [
    'barbarian_king_level', 'archer_queen_level', 'grand_warden_level',
    'royal_champion_level', 'minion_prince_level',
    'troops_owned', 'spells_owned', 'siege_machines_owned', 'pets_owned',
    'equipment_owned',
] -%}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['snapshot_id', 'player_tag'],
        on_schema_change='fail',
        indexes=[
            {'columns': ['snapshot_id', 'player_tag'], 'unique': True},
            {'columns': ['clan_tag', 'snapshot_at']},
            {'columns': ['clan_tag', 'player_tag', 'snapshot_at']},
            {'columns': ['player_tag', 'snapshot_at']},
        ],
    )
}}

with

clan_snapshots as (

    select * from {{ ref('int_clan_snapshots_listed') }}

),

new_snapshots as (

    select clan_snapshots.* from clan_snapshots
    {{ after_clan_watermark('clan_snapshots') }}

),

-- incremental: the new snapshots' fetch and run ids filter every staging
-- input; PostgreSQL pushes the filters through the views to the indexes of
-- raw.fetch_log, so only the new snapshots' payloads are read and parsed
clan_members as (

    select staged.* from {{ ref('stg_coc__clan_members') }} as staged
    {% if is_incremental() %}
        where
            staged.fetch_id
            = any(array(select new_snapshots.roster_fetch_id from new_snapshots))
    {% endif %}

),

run_players as (

    select staged.* from {{ ref('stg_coc__players') }} as staged
    {% if is_incremental() %}
        where
            staged.run_id
            = any(array(select new_snapshots.run_id from new_snapshots))
    {% endif %}

),

run_player_units as (

    select staged.* from {{ ref('int_player_units_pivoted') }} as staged
    {% if is_incremental() %}
        where
            staged.run_id
            = any(array(select new_snapshots.run_id from new_snapshots))
    {% endif %}

),

current_wars as (

    select staged.* from {{ ref('stg_coc__wars') }} as staged
    where
        staged.source_endpoint = 'currentwar'
        {% if is_incremental() %}
            and staged.run_id
            = any(array(select new_snapshots.run_id from new_snapshots))
        {% endif %}

),

game_calendar as (

    select * from {{ ref('game_calendar') }}

),

-- one profile and one current war per run (the first fetch if repeated)
run_profile_fetches as (

    select distinct on (run_id, player_tag)
        run_id,
        player_tag,
        fetch_id,
        fetched_at

    from run_players
    order by run_id, player_tag, fetch_id

),

run_wars as (

    select distinct on (run_id, clan_tag) *
    from current_wars
    order by run_id, clan_tag, fetch_id

),

roster as (

    select
        new_snapshots.snapshot_id,
        new_snapshots.run_id,
        new_snapshots.clan_tag,
        new_snapshots.fetched_at,
        new_snapshots.snapshot_at,
        clan_members.player_tag,
        clan_members.player_name,
        clan_members.role,
        clan_members.legacy_league_id,
        clan_members.legacy_league_name,
        clan_members.league_tier_id,
        clan_members.league_tier_name,
        clan_members.builder_base_league_id,
        clan_members.builder_base_league_name,
        clan_members.town_hall_level,
        clan_members.exp_level,
        clan_members.trophies,
        clan_members.builder_base_trophies,
        clan_members.donations,
        clan_members.donations_received,
        run_profile_fetches.fetch_id as run_profile_fetch_id,
        run_profile_fetches.fetched_at as run_profile_fetched_at

    from new_snapshots
    inner join clan_members
        on new_snapshots.roster_fetch_id = clan_members.fetch_id
    left join run_profile_fetches
        on
            new_snapshots.run_id = run_profile_fetches.run_id
            and clan_members.player_tag = run_profile_fetches.player_tag

),

{% if is_incremental() %}

    -- the latest stored row of each member of the batch (in that clan): one
    -- probe of the (clan_tag, player_tag, snapshot_at) index per member
    batch_members as (

        select distinct
            clan_tag,
            player_tag

        from roster

    ),

    stored_rows as (

        select
            batch_members.clan_tag,
            batch_members.player_tag,
            latest_row.row_hash,
            latest_row.profile_fetch_id,
            latest_row.profile_fetched_at,
            latest_row.first_seen_at,
            latest_row.updated_at

        from batch_members
        cross join lateral (
            select
                existing.row_hash,
                existing.profile_fetch_id,
                existing.profile_fetched_at,
                existing.first_seen_at,
                existing.updated_at
            from {{ this }} as existing
            where
                existing.clan_tag = batch_members.clan_tag
                and existing.player_tag = batch_members.player_tag
            order by existing.snapshot_at desc, existing.snapshot_id desc
            limit 1
        ) as latest_row

    ),

{% endif %}

-- carry-forward: the rows of a member in the clan from one fetched profile
-- to the next form a group (0: before the batch's first fetched profile)
profile_groups as (

    select
        roster.*,
        count(roster.run_profile_fetch_id) over (
            partition by roster.clan_tag, roster.player_tag
            order by roster.snapshot_at, roster.snapshot_id
            rows between unbounded preceding and current row
        ) as profile_group

    from roster

),

-- each row's profile: its group's fetched one, or in group 0 the one of the
-- member's latest stored row (fetched or itself carried); never a later one
chosen_profiles as (

    select
        profile_groups.*,
        case
            when profile_groups.profile_group > 0
                then
                    first_value(profile_groups.run_profile_fetch_id) over (
                        member_profile_group
                    )
            {% if is_incremental() -%}
                else stored_rows.profile_fetch_id
            {%- endif %}
        end as profile_fetch_id,
        case
            when profile_groups.profile_group > 0
                then
                    first_value(profile_groups.run_profile_fetched_at) over (
                        member_profile_group
                    )
            {% if is_incremental() -%}
                else stored_rows.profile_fetched_at
            {%- endif %}
        end as profile_fetched_at

    from profile_groups
    {% if is_incremental() %}
        left join stored_rows
            on
                profile_groups.clan_tag = stored_rows.clan_tag
                and profile_groups.player_tag = stored_rows.player_tag
    {% endif %}
    window member_profile_group as (
        partition by
            profile_groups.clan_tag,
            profile_groups.player_tag,
            profile_groups.profile_group
        order by profile_groups.snapshot_at, profile_groups.snapshot_id
    )

),

-- the profiles used: the new runs' and, incremental, the ones carried from
-- the stored rows, read by their fetch ids (raw.fetch_log's primary key)
profiles as (

    select * from run_players
    {% if is_incremental() %}
        union all
        select staged.* from {{ ref('stg_coc__players') }} as staged
        where
            staged.fetch_id = any(
                array(
                    select stored_rows.profile_fetch_id
                    from stored_rows
                    where stored_rows.profile_fetch_id is not null
                )
            )
    {% endif %}

),

player_units as (

    select * from run_player_units
    {% if is_incremental() %}
        union all
        select staged.* from {{ ref('int_player_units_pivoted') }} as staged
        where
            staged.fetch_id = any(
                array(
                    select stored_rows.profile_fetch_id
                    from stored_rows
                    where stored_rows.profile_fetch_id is not null
                )
            )
    {% endif %}

),

joined as (

    select
        roster.snapshot_id,
        roster.run_id,
        roster.clan_tag,
        roster.player_tag,
        profiles.fetch_id as profile_fetch_id,
        coalesce(roster.player_name, profiles.player_name) as name,
        coalesce(roster.role, profiles.role) as role,
        profiles.fetch_id is not null as has_profile,
        -- a profile, not the run's own
        coalesce(
            profiles.fetch_id <> roster.run_profile_fetch_id,
            profiles.fetch_id is not null
        ) as is_profile_carried,
        coalesce(roster.legacy_league_id, profiles.legacy_league_id)
            as legacy_league_id,
        coalesce(roster.legacy_league_name, profiles.legacy_league_name)
            as legacy_league_name,
        coalesce(roster.league_tier_id, profiles.league_tier_id)
            as league_tier_id,
        coalesce(roster.league_tier_name, profiles.league_tier_name)
            as league_tier_name,
        coalesce(
            roster.builder_base_league_id, profiles.builder_base_league_id
        ) as builder_base_league_id,
        coalesce(
            roster.builder_base_league_name,
            profiles.builder_base_league_name
        ) as builder_base_league_name,
        profiles.current_league_season_id as league_season_id,
        profiles.current_league_group_tag as league_group_tag,
        case
            when profiles.fetch_id is not null
                then coalesce(
                        player_units.equipment_flags,
                        '{"owned": {}, "equipped": {}}'::jsonb
                    )
        end as equipment_flags,
        jsonb_build_object(
            'active_super_troops',
            case
                when profiles.fetch_id is not null
                    then coalesce(player_units.active_super_troops, '[]'::jsonb)
            end,
            'war_battle_modifier',
            case
                when run_wars.state <> 'notInWar' then run_wars.battle_modifier
            end
        ) as modifier_flags,
        case
            when profiles.fetch_id is not null
                then coalesce(player_units.pet_levels, '{}'::jsonb)
        end as pet_levels,
        coalesce(roster.town_hall_level, profiles.town_hall_level)
            as town_hall_level,
        coalesce(roster.exp_level, profiles.exp_level) as exp_level,
        coalesce(roster.trophies, profiles.trophies) as trophies,
        profiles.best_trophies,
        coalesce(
            roster.builder_base_trophies, profiles.builder_base_trophies
        ) as builder_base_trophies,
        coalesce(roster.donations, profiles.donations) as donations,
        coalesce(
            roster.donations_received, profiles.donations_received
        ) as donations_received,
        profiles.war_stars,
        profiles.clan_capital_contributions as capital_contributions,
        {% for column in profile_unit_columns -%}
            case
                when profiles.fetch_id is not null
                    then coalesce(player_units.{{ column }}, 0)
            end as {{ column }},
        {% endfor -%}
        -- placed in a ranked tier, at or after the split (seed, not a literal)
        coalesce(
            roster.snapshot_at >= game_calendar.ranked_split_at
            and coalesce(roster.league_tier_id, profiles.league_tier_id)
            <> {{ members_unranked_tier_id() }},
            false
        ) as is_ranked,
        roster.snapshot_at >= game_calendar.ranked_split_at as is_after_split,
        roster.fetched_at,
        roster.snapshot_at,
        case
            when profiles.fetch_id is not null then roster.profile_fetched_at
        end as profile_fetched_at

    from chosen_profiles as roster
    cross join game_calendar
    left join profiles
        on roster.profile_fetch_id = profiles.fetch_id
    left join player_units
        on roster.profile_fetch_id = player_units.fetch_id
    left join run_wars
        on
            roster.run_id = run_wars.run_id
            and roster.clan_tag = run_wars.clan_tag

),

typed as (

    select
        -- ids
        snapshot_id,
        run_id,
        clan_tag,
        player_tag,
        profile_fetch_id,

        -- properties
        name,
        role,
        has_profile,
        is_profile_carried,
        legacy_league_id,
        legacy_league_name,
        league_tier_id,
        league_tier_name,
        case
            when is_after_split and league_tier_id is not null
                then league_tier_id
            else legacy_league_id
        end as league_id,
        case
            when is_after_split and league_tier_id is not null
                then league_tier_name
            else legacy_league_name
        end as league_name,
        builder_base_league_id,
        builder_base_league_name,
        league_season_id,
        league_group_tag,
        equipment_flags,
        modifier_flags,
        pet_levels,

        -- numbers
        town_hall_level,
        exp_level,
        trophies,
        best_trophies,
        case when not is_ranked then trophies end as battle_mode_trophies,
        case when is_ranked then trophies end as ranked_trophies,
        builder_base_trophies,
        donations,
        donations_received,
        war_stars,
        capital_contributions,
        barbarian_king_level,
        archer_queen_level,
        grand_warden_level,
        royal_champion_level,
        minion_prince_level,
        troops_owned,
        spells_owned,
        siege_machines_owned,
        pets_owned,
        equipment_owned,

        -- timestamps
        fetched_at,
        snapshot_at,
        profile_fetched_at

    from joined

),

hashed as (

    select
        typed.*,
        {{ members_row_hash('typed') }} as row_hash

    from typed

),

sequenced as (

    select
        hashed.*,
        -- the member's previous row in the clan: in the batch, else stored
        coalesce(
            lag(hashed.row_hash) over member_history,
            {% if is_incremental() -%}
                stored_rows.row_hash
            {%- else -%}
                null::text
            {%- endif %}
        ) as previous_row_hash,
        min(hashed.snapshot_at) over (
            partition by hashed.clan_tag, hashed.player_tag
        ) as first_batch_seen_at,
        {% if is_incremental() %}
            stored_rows.first_seen_at as stored_first_seen_at,
            stored_rows.updated_at as stored_updated_at
        {% else %}
            null::timestamptz as stored_first_seen_at,
            null::timestamptz as stored_updated_at
        {% endif %}

    from hashed
    {% if is_incremental() %}
        left join stored_rows
            on
                hashed.clan_tag = stored_rows.clan_tag
                and hashed.player_tag = stored_rows.player_tag
    {% endif %}
    window member_history as (
        partition by hashed.clan_tag, hashed.player_tag
        order by hashed.snapshot_at, hashed.snapshot_id
    )

),

changes as (

    select
        sequenced.*,
        -- the first row of a member in a clan is a change too
        coalesce(
            sequenced.row_hash <> sequenced.previous_row_hash, true
        ) as is_changed

    from sequenced

),

final as (

    select
        -- ids
        snapshot_id,
        run_id,
        clan_tag,
        player_tag,
        profile_fetch_id,

        -- properties
        name,
        role,
        has_profile,
        is_profile_carried,
        legacy_league_id,
        legacy_league_name,
        league_tier_id,
        league_tier_name,
        league_id,
        league_name,
        builder_base_league_id,
        builder_base_league_name,
        league_season_id,
        league_group_tag,
        equipment_flags,
        modifier_flags,
        pet_levels,
        row_hash,

        -- numbers
        town_hall_level,
        exp_level,
        trophies,
        best_trophies,
        battle_mode_trophies,
        ranked_trophies,
        builder_base_trophies,
        donations,
        donations_received,
        war_stars,
        capital_contributions,
        barbarian_king_level,
        archer_queen_level,
        grand_warden_level,
        royal_champion_level,
        minion_prince_level,
        troops_owned,
        spells_owned,
        siege_machines_owned,
        pets_owned,
        equipment_owned,

        -- timestamps
        fetched_at,
        snapshot_at,
        profile_fetched_at,
        coalesce(stored_first_seen_at, first_batch_seen_at) as first_seen_at,
        coalesce(
            max(case when is_changed then snapshot_at end) over (
                partition by clan_tag, player_tag
                order by snapshot_at, snapshot_id
                rows between unbounded preceding and current row
            ),
            stored_updated_at
        ) as updated_at

    from changes

)

select * from final
