{#-
    One row per unit a player owns, per player fetch: heroes, troops, pets,
    siege machines, spells and hero equipment.

    The API sends pets and siege machines inside `troops[]`; unit_type tells
    them apart by name (lists in macros/coc_units.sql). Equipment rows come
    from `heroEquipment[]` (everything owned); equipped_on_hero names the hero
    whose `heroes[].equipment` holds the item right now. max_level is the
    game-wide maximum, not the cap at the player's town hall.

    Every CTE carries the fetch's lineage (nothing joins back to
    player_fetches) and player_fetches is `not materialized`, so a filter on
    this view (run_id, fetch_id, snapshot_at) reaches raw in both branches of
    the union and only the selected payloads are parsed: the incremental
    marts depend on it. The equipped hero of an item is looked up in the same
    body's `heroes[]`.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

player_fetches as not materialized (

    select
        fetch_id,
        run_id,
        payload_hash,
        body ->> 'tag' as player_tag,
        body,
        fetched_at,
        snapshot_at

    from payload_fetches
    where endpoint = 'player'

),

listed_units as (

    select
        player_fetches.fetch_id,
        player_fetches.run_id,
        player_fetches.payload_hash,
        player_fetches.player_tag,
        player_fetches.fetched_at,
        player_fetches.snapshot_at,
        unit_list.list_name,
        unit_item.unit,
        unit_item.unit ->> 'name' as unit_name,
        unit_item.list_position,
        -- [hero, slot] of an item that a hero has equipped now
        (
            select
                jsonb_build_array(
                    hero.unit ->> 'name', equipment_item.equipment_slot
                )
            from
                jsonb_array_elements(
                    {{ coc_json_array("player_fetches.body -> 'heroes'") }}
                ) as hero (unit)
            cross join
                lateral jsonb_array_elements(
                    {{ coc_json_array("hero.unit -> 'equipment'") }}
                ) with ordinality as equipment_item (unit, equipment_slot)
            where
                unit_list.list_name = 'heroEquipment'
                and equipment_item.unit ->> 'name' = unit_item.unit ->> 'name'
            limit 1
        ) as equipped

    from player_fetches
    cross join
        lateral (
            values
            ('heroes', player_fetches.body -> 'heroes'),
            ('troops', player_fetches.body -> 'troops'),
            ('spells', player_fetches.body -> 'spells'),
            ('heroEquipment', player_fetches.body -> 'heroEquipment')
        ) as unit_list (list_name, units)
    cross join lateral jsonb_array_elements(
        {{ coc_json_array('unit_list.units') }}
    ) with ordinality as unit_item (unit, list_position)

),

-- equipped items missing from heroEquipment (not seen in real data): kept
equipped_not_listed as (

    select
        player_fetches.fetch_id,
        player_fetches.run_id,
        player_fetches.payload_hash,
        player_fetches.player_tag,
        player_fetches.fetched_at,
        player_fetches.snapshot_at,
        'heroEquipment' as list_name,
        equipment_item.unit,
        equipment_item.unit ->> 'name' as unit_name,
        null::bigint as list_position,
        jsonb_build_array(
            hero.unit ->> 'name', equipment_item.equipment_slot
        ) as equipped

    from player_fetches
    cross join
        lateral jsonb_array_elements(
            {{ coc_json_array("player_fetches.body -> 'heroes'") }}
        ) as hero (unit)
    cross join
        lateral jsonb_array_elements(
            {{ coc_json_array("hero.unit -> 'equipment'") }}
        ) with ordinality as equipment_item (unit, equipment_slot)
    where not exists (
            select 1
            from
                jsonb_array_elements(
                    {{ coc_json_array("player_fetches.body -> 'heroEquipment'") }}
                ) as owned (unit)
            where owned.unit ->> 'name' = equipment_item.unit ->> 'name'
        )

),

all_units as (

    select * from listed_units
    union all
    select * from equipped_not_listed

),

classified as (

    select
        all_units.*,
        case
            when all_units.list_name = 'heroes' then 'hero'
            when all_units.list_name = 'spells' then 'spell'
            when all_units.list_name = 'heroEquipment' then 'equipment'
            when all_units.unit_name in {{ coc_sql_list(coc_pet_names()) }}
                then 'pet'
            when
                all_units.unit_name
                in {{ coc_sql_list(coc_siege_machine_names()) }}
                then 'siege_machine'
            else 'troop'
        end as unit_type,
        all_units.list_name = 'troops'
        and all_units.unit_name
        in {{ coc_sql_list(coc_super_troop_names()) }} as is_super_troop,
        all_units.unit_name
        in {{ coc_sql_list(coc_event_unit_names()) }} as is_event_unit

    from all_units

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        player_tag,
        unit_type,
        unit_name,
        unit ->> 'village' as village,

        -- properties
        equipped ->> 0 as equipped_on_hero,
        is_super_troop,
        is_event_unit,
        case
            when is_super_troop
                then coalesce(
                        {{ coc_bool("unit -> 'superTroopIsActive'") }},
                        false
                    )
        end as super_troop_is_active,

        -- numbers
        {{ coc_int("unit -> 'level'") }} as level,
        {{ coc_int("unit -> 'maxLevel'") }} as max_level,
        (equipped ->> 1)::integer as equipment_slot,
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from classified

)

select * from renamed
