{#-
    One row per attack on an enemy district per raid weekend per fetch, from
    `attackLog[].districts[].attacks[]`. raid_number is the raid's place in
    the attack log, attack_number the attack's place in its district's list;
    in the recorded samples the list runs newest first (the finishing hit,
    at 100 %, is number 1).
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

season_fetches as (

    select * from payload_fetches
    where endpoint = 'capitalraidseasons'

),

seasons as (

    select
        season_fetches.*,
        season_item.season

    from season_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("season_fetches.body -> 'items'") }}
    ) as season_item (season)

),

raids as (

    select
        seasons.*,
        raid_item.raid,
        raid_item.raid_number

    from seasons
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("seasons.season -> 'attackLog'") }}
    ) with ordinality as raid_item (raid, raid_number)

),

districts as (

    select
        raids.*,
        district_item.district

    from raids
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("raids.raid -> 'districts'") }}
    ) as district_item (district)

),

attacks as (

    select
        districts.*,
        attack_item.attack,
        attack_item.attack_number

    from districts
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("districts.district -> 'attacks'") }}
    ) with ordinality as attack_item (attack, attack_number)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(resource_tag, fetch_clan_tag) as clan_tag,
        {{ coc_timestamp("season ->> 'startTime'") }} as season_start_at,
        raid_number::integer as raid_number,
        {{ coc_bigint("district -> 'id'") }} as district_id,
        attack_number::integer as attack_number,
        attack -> 'attacker' ->> 'tag' as attacker_tag,
        raid -> 'defender' ->> 'tag' as defender_clan_tag,

        -- properties
        attack -> 'attacker' ->> 'name' as attacker_name,
        raid -> 'defender' ->> 'name' as defender_clan_name,
        district ->> 'name' as district_name,

        -- numbers
        {{ coc_int("raid -> 'defender' -> 'level'") }} as defender_clan_level,
        {{ coc_int("district -> 'districtHallLevel'") }}
            as district_hall_level,
        {{ coc_int("district -> 'attackCount'") }} as district_attack_count,
        {{ coc_bigint("district -> 'totalLooted'") }} as district_total_looted,
        {{ coc_int("district -> 'stars'") }} as district_stars,
        {{ coc_numeric("district -> 'destructionPercent'") }}
            as district_destruction_pct,
        {{ coc_int("attack -> 'stars'") }} as stars,
        {{ coc_numeric("attack -> 'destructionPercent'") }}
            as destruction_pct,

        -- timestamps
        fetched_at,
        snapshot_at

    from attacks

)

select * from renamed
