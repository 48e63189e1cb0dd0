{#-
    Rush percentages of every member with a profile in a clan snapshot
    (DOMAIN.md "Derived metrics"), caps from the unit_caps seed. The profile
    is the one member_snapshot_stats uses (profile_fetch_id): this run's or
    carried from the member's earlier snapshot, with the snapshot's town
    hall:

    - hero rush: over the home-village heroes available at the member's
      town hall (cap > 0 there), the mean of max(0, cap - level) / cap,
      x 100; a hero the profile does not list counts as level 0. No hero
      available (below TH 7): 0 over 0 heroes.
    - lab rush: 100 - sum(min(level, cap at TH-1)) / sum(cap at TH-1) x 100
      over the home-village troops and spells the member owns (event troops
      and super troops excluded; siege machines and pets are not troops or
      spells). A unit the seed does not know is left out and listed. No
      cap at TH-1 at all (TH 1): 0.

    Incremental (delete+insert on snapshot_id, player_tag): only the clan's
    snapshots newer than the latest stored one; the profiles' units are
    read by their fetch ids, which reach raw.fetch_log's primary key.

    Planning: the aggregating CTEs are `materialized` and the table is
    analyzed after a build that grew it by > 10 % (post_hook analyze_if_grown:
    a routine build skips it). Right after a load the planner's
    statistics are stale (a batch of new runs looks like a few rows) and it
    would re-run an inlined aggregate inside a nested loop once per row.
    The unit_caps seed is analyzed first (pre_hook): a seed is loaded
    without statistics, and its ~2,000 rows read as 5 made the planner join
    every member's caps to every unit by nested loop (minutes for a batch).
-#}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['snapshot_id', 'player_tag'],
        on_schema_change='fail',
        pre_hook="analyze {{ ref('unit_caps') }}",
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

unit_caps as (

    select * from {{ ref('unit_caps') }}
    where village = 'home'

),

new_snapshots as (

    select
        roster_snapshots.snapshot_id,
        roster_snapshots.run_id

    from roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

member_snapshot_stats as (

    select * from {{ ref('member_snapshot_stats') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))
        and has_profile
        and town_hall_level is not null

),

members as materialized (

    select
        member_snapshot_stats.snapshot_id,
        member_snapshot_stats.clan_tag,
        member_snapshot_stats.player_tag,
        member_snapshot_stats.town_hall_level,
        member_snapshot_stats.snapshot_at,
        member_snapshot_stats.profile_fetch_id as fetch_id

    from member_snapshot_stats

),

-- the units of the profiles used (a carried profile is read again by id)
player_units as (

    select * from {{ ref('stg_coc__player_units') }}
    where
        fetch_id = any(array(select members.fetch_id from members))
        and village = 'home'

),

-- one row per unit of a profile used, however many snapshots use it (a
-- carried profile serves several): a join to members would repeat its units
member_units as (

    select * from player_units

),

hero_levels as (

    select
        members.snapshot_id,
        members.player_tag,
        unit_caps.unit_name,
        unit_caps.max_level as cap,
        coalesce(hero_units.level, 0) as level

    from members
    inner join unit_caps
        on
            members.town_hall_level = unit_caps.town_hall_level
            and unit_caps.unit_type = 'hero'
            and unit_caps.max_level > 0
    left join member_units as hero_units
        on
            members.fetch_id = hero_units.fetch_id
            and unit_caps.unit_name = hero_units.unit_name
            and hero_units.unit_type = 'hero'

),

hero_rush as materialized (

    select
        snapshot_id,
        player_tag,
        count(*)::integer as hero_count,
        100 * avg(greatest(0, cap - level)::float8 / cap) as hero_rush_pct,
        jsonb_object_agg(
            unit_name, jsonb_build_object('cap', cap, 'level', level)
        ) as heroes

    from hero_levels
    group by snapshot_id, player_tag

),

lab_levels as (

    select
        members.snapshot_id,
        members.player_tag,
        lab_units.unit_name,
        lab_units.level,
        unit_caps.max_level as cap

    from members
    inner join member_units as lab_units
        on
            members.fetch_id = lab_units.fetch_id
            and lab_units.unit_type in ('troop', 'spell')
            and not lab_units.is_event_unit
            and not lab_units.is_super_troop
    left join unit_caps
        on
            lab_units.unit_name = unit_caps.unit_name
            and unit_caps.unit_type in ('troop', 'spell')
            and members.town_hall_level - 1 = unit_caps.town_hall_level

),

lab_rush as materialized (

    select
        snapshot_id,
        player_tag,
        count(cap)::integer as unit_count,
        -- least() ignores NULL: units without a cap are filtered out
        coalesce(
            sum(least(level, cap)) filter (where cap is not null), 0
        )::integer as level_sum,
        coalesce(sum(cap), 0)::integer as cap_sum,
        coalesce(
            jsonb_object_agg(
                unit_name, jsonb_build_object('level', level, 'cap', cap)
            ) filter (where level < cap),
            '{}'::jsonb
        ) as below_cap,
        coalesce(
            jsonb_agg(unit_name order by unit_name) filter (
                where cap is null
            ),
            '[]'::jsonb
        ) as unknown_units

    from lab_levels
    group by snapshot_id, player_tag

),

final as (

    select
        -- ids
        members.snapshot_id,
        members.clan_tag,
        members.player_tag,

        -- properties
        jsonb_build_object(
            'town_hall_level', members.town_hall_level,
            'hero_count', coalesce(hero_rush.hero_count, 0),
            'heroes', coalesce(hero_rush.heroes, '{}'::jsonb)
        ) as hero_rush_components,
        jsonb_build_object(
            'town_hall_level', members.town_hall_level,
            'cap_town_hall_level', members.town_hall_level - 1,
            'unit_count', coalesce(lab_rush.unit_count, 0),
            'level_sum', coalesce(lab_rush.level_sum, 0),
            'cap_sum', coalesce(lab_rush.cap_sum, 0),
            'below_cap', coalesce(lab_rush.below_cap, '{}'::jsonb),
            'unknown_units', coalesce(lab_rush.unknown_units, '[]'::jsonb)
        ) as lab_rush_components,

        -- numbers
        members.town_hall_level,
        coalesce(hero_rush.hero_count, 0) as hero_count,
        {{ metrics_round('coalesce(hero_rush.hero_rush_pct, 0)') }}
            as hero_rush_pct,
        coalesce(lab_rush.unit_count, 0) as lab_unit_count,
        coalesce(lab_rush.level_sum, 0) as lab_level_sum,
        coalesce(lab_rush.cap_sum, 0) as lab_cap_sum,
        {{ metrics_round(
            'case when lab_rush.cap_sum > 0 then 100 - 100.0'
            ~ ' * lab_rush.level_sum / lab_rush.cap_sum else 0 end'
        ) }} as lab_rush_pct,

        -- timestamps
        members.snapshot_at

    from members
    left join hero_rush
        on
            members.snapshot_id = hero_rush.snapshot_id
            and members.player_tag = hero_rush.player_tag
    left join lab_rush
        on
            members.snapshot_id = lab_rush.snapshot_id
            and members.player_tag = lab_rush.player_tag

)

select * from final
