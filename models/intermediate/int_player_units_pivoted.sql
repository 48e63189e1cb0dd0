{#-
    One row per player fetch with at least one unit: the units of
    stg_coc__player_units turned into the columns the member marts carry:
    hero levels, pet levels, unit counts, owned and equipped hero equipment,
    active super troops.

    Grouped by the fetch and its lineage (run_id, snapshot_at, ...), never
    joined back to another aggregate: a filter on run_id or snapshot_at from
    a mart is pushed through the grouping into stg_coc__player_units and raw,
    so only the selected payloads are parsed.

    A view rather than ephemeral so that the marts' unit tests can give it
    rows and analysts can query it.
-#}

{{ config(materialized='view') }}

with

player_units as (

    select * from {{ ref('stg_coc__player_units') }}

),

pivoted as (

    select
        -- ids
        fetch_id,
        run_id,
        player_tag,

        -- heroes (home village): level, NULL when not unlocked
        max(level) filter (
            where unit_type = 'hero' and unit_name = 'Barbarian King'
        ) as barbarian_king_level,
        max(level) filter (
            where unit_type = 'hero' and unit_name = 'Archer Queen'
        ) as archer_queen_level,
        max(level) filter (
            where unit_type = 'hero' and unit_name = 'Grand Warden'
        ) as grand_warden_level,
        max(level) filter (
            where unit_type = 'hero' and unit_name = 'Royal Champion'
        ) as royal_champion_level,
        max(level) filter (
            where unit_type = 'hero' and unit_name = 'Minion Prince'
        ) as minion_prince_level,

        -- pets and equipment: {name: level}
        jsonb_object_agg(unit_name, level) filter (
            where unit_type = 'pet'
        ) as pet_levels,
        jsonb_object_agg(unit_name, level) filter (
            where unit_type = 'equipment'
        ) as owned_equipment,
        -- [[hero, item], ...] in slot order, made an object below
        jsonb_agg(
            jsonb_build_array(equipped_on_hero, unit_name)
            order by equipped_on_hero, equipment_slot, unit_name
        ) filter (
            where unit_type = 'equipment' and equipped_on_hero is not null
        ) as equipped_pairs,
        jsonb_agg(unit_name order by unit_name) filter (
            where super_troop_is_active
        ) as active_super_troops,

        -- counts of units owned
        count(*) filter (
            where unit_type = 'troop' and village = 'home' and not is_super_troop
        )::integer as troops_owned,
        count(*) filter (
            where unit_type = 'spell' and village = 'home'
        )::integer as spells_owned,
        count(*) filter (
            where unit_type = 'siege_machine'
        )::integer as siege_machines_owned,
        count(*) filter (where unit_type = 'pet')::integer as pets_owned,
        count(*) filter (
            where unit_type = 'equipment'
        )::integer as equipment_owned,

        -- timestamps
        snapshot_at

    from player_units
    group by fetch_id, run_id, player_tag, snapshot_at

),

final as (

    select
        fetch_id,
        run_id,
        player_tag,
        barbarian_king_level,
        archer_queen_level,
        grand_warden_level,
        royal_champion_level,
        minion_prince_level,
        pet_levels,
        jsonb_build_object(
            'owned', coalesce(owned_equipment, '{}'::jsonb),
            'equipped', coalesce(
                (
                    select
                        jsonb_object_agg(
                            hero_items.hero_name, hero_items.item_names
                        )
                    from (
                        select
                            equipped_pair.pair ->> 0 as hero_name,
                            jsonb_agg(
                                equipped_pair.pair -> 1
                                order by equipped_pair.pair_position
                            ) as item_names
                        from
                            jsonb_array_elements(pivoted.equipped_pairs)
                            with ordinality as equipped_pair (pair, pair_position)
                        group by equipped_pair.pair ->> 0
                    ) as hero_items
                ),
                '{}'::jsonb
            )
        ) as equipment_flags,
        coalesce(active_super_troops, '[]'::jsonb) as active_super_troops,
        troops_owned,
        spells_owned,
        siege_machines_owned,
        pets_owned,
        equipment_owned,
        snapshot_at

    from pivoted

)

select * from final
