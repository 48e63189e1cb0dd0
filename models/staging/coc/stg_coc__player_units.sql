{#-
    One row per unit a player owns, per player fetch: heroes, troops, pets,
    siege machines, spells and hero equipment.

    The API sends pets and siege machines inside `troops[]`; unit_type tells
    them apart by name (lists in macros/coc_units.sql). Equipment rows come
    from `heroEquipment[]` (everything owned); equipped_on_hero names the hero
    whose `heroes[].equipment` holds the item right now. max_level is the
    game-wide maximum, not the cap at the player's town hall.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

player_fetches as (

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

unit_lists as (

    select
        player_fetches.fetch_id,
        unit_list.list_name,
        unit_list.units

    from player_fetches
    cross join lateral (
        values
        ('heroes', player_fetches.body -> 'heroes'),
        ('troops', player_fetches.body -> 'troops'),
        ('spells', player_fetches.body -> 'spells'),
        ('heroEquipment', player_fetches.body -> 'heroEquipment')
    ) as unit_list (list_name, units)

),

listed_units as (

    select
        unit_lists.fetch_id,
        unit_lists.list_name,
        unit_item.unit,
        unit_item.list_position,
        unit_item.unit ->> 'name' as unit_name

    from unit_lists
    cross join lateral jsonb_array_elements(
        {{ coc_json_array('unit_lists.units') }}
    ) with ordinality as unit_item (unit, list_position)

),

equipped as (

    select
        player_fetches.fetch_id,
        hero.unit ->> 'name' as hero_name,
        equipment_item.unit,
        equipment_item.equipment_slot,
        equipment_item.unit ->> 'name' as equipment_name

    from player_fetches
    cross join
        lateral jsonb_array_elements(
            {{ coc_json_array("player_fetches.body -> 'heroes'") }}
        ) as hero (unit)
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("hero.unit -> 'equipment'") }}
    ) with ordinality as equipment_item (unit, equipment_slot)

),

owned_units as (

    select
        listed_units.fetch_id,
        listed_units.list_name,
        listed_units.unit,
        listed_units.unit_name,
        listed_units.list_position,
        equipped.hero_name as equipped_on_hero,
        equipped.equipment_slot

    from listed_units
    left join equipped
        on
            listed_units.list_name = 'heroEquipment'
            and listed_units.fetch_id = equipped.fetch_id
            and listed_units.unit_name = equipped.equipment_name

),

-- equipped items missing from heroEquipment (not seen in real data): kept
equipped_not_listed as (

    select
        equipped.fetch_id,
        'heroEquipment' as list_name,
        equipped.unit,
        equipped.equipment_name as unit_name,
        null::bigint as list_position,
        equipped.hero_name as equipped_on_hero,
        equipped.equipment_slot

    from equipped
    where not exists (
            select 1
            from listed_units
            where
                listed_units.list_name = 'heroEquipment'
                and listed_units.fetch_id = equipped.fetch_id
                and listed_units.unit_name = equipped.equipment_name
        )

),

all_units as (

    select * from owned_units
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
        player_fetches.fetch_id,
        player_fetches.run_id,
        player_fetches.payload_hash,

        -- ids
        player_fetches.player_tag,
        classified.unit_type,
        classified.unit_name,
        classified.unit ->> 'village' as village,

        -- properties
        classified.equipped_on_hero,
        classified.is_super_troop,
        classified.is_event_unit,
        case
            when classified.is_super_troop
                then coalesce(
                        {{ coc_bool("classified.unit -> 'superTroopIsActive'") }},
                        false
                    )
        end as super_troop_is_active,

        -- numbers
        {{ coc_int("classified.unit -> 'level'") }} as level,
        {{ coc_int("classified.unit -> 'maxLevel'") }} as max_level,
        classified.equipment_slot::integer as equipment_slot,
        classified.list_position::integer as list_position,

        -- timestamps
        player_fetches.fetched_at,
        player_fetches.snapshot_at

    from classified
    inner join player_fetches
        on classified.fetch_id = player_fetches.fetch_id

)

select * from renamed
