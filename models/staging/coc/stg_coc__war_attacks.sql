{#-
    One row per attack per war fetch (currentwar, cwl_war), unnested from
    `members[].attacks[]` of both sides. attack_order is the war-wide
    sequence the API sends; attack_number is the attack's place in its
    member's list (1, 2).
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

war_fetches as (

    select * from payload_fetches
    where endpoint in ('currentwar', 'cwl_war')

),

war_sides as (

    select
        war_fetches.*,
        war_side.side,
        war_side.war_clan,
        war_side.other_clan

    from war_fetches
    cross join lateral (
        values
        (
            'clan',
            war_fetches.body -> 'clan',
            war_fetches.body -> 'opponent'
        ),
        (
            'opponent',
            war_fetches.body -> 'opponent',
            war_fetches.body -> 'clan'
        )
    ) as war_side (side, war_clan, other_clan)

),

members as (

    select
        war_sides.*,
        member_item.member

    from war_sides
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("war_sides.war_clan -> 'members'") }}
    ) as member_item (member)

),

attacks as (

    select
        members.*,
        attack_item.attack,
        attack_item.attack_number

    from members
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("members.member -> 'attacks'") }}
    ) with ordinality as attack_item (attack, attack_number)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(attack ->> 'attackerTag', member ->> 'tag') as attacker_tag,
        attack ->> 'defenderTag' as defender_tag,
        war_clan ->> 'tag' as attacker_clan_tag,
        other_clan ->> 'tag' as defender_clan_tag,
        side as war_side,
        endpoint as source_endpoint,
        case when endpoint = 'cwl_war' then resource_tag end as war_tag,

        -- properties
        case when endpoint = 'cwl_war' then 'cwl' else 'regular' end
            as war_type,
        body ->> 'state' as war_state,

        -- numbers
        attack_number::integer as attack_number,
        {{ coc_int("attack -> 'order'") }} as attack_order,
        {{ coc_int("attack -> 'stars'") }} as stars,
        {{ coc_numeric("attack -> 'destructionPercentage'") }}
            as destruction_pct,
        {{ coc_int("attack -> 'duration'") }} as duration_seconds,
        {{ coc_int(
            "coalesce(member -> 'townhallLevel', member -> 'townHallLevel')"
        ) }} as attacker_town_hall_level,
        {{ coc_int("member -> 'mapPosition'") }} as attacker_map_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from attacks

)

select * from renamed
