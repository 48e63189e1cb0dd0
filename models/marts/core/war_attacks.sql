{#-
    One row per attack of a war of ours, both directions: our members'
    attacks (is_our_clan_attack) and the opponent's attacks on us. Attacks
    come from the war's latest fetch only (attacks only ever get added), so
    each attack is counted once however often the war was fetched.

    previous_best_stars: the best stars on the same defender by attacks
    earlier in the war's order; new_stars = max(0, stars - that), the stars
    the attack added to its side's total.

    Incremental, delete+insert by war: a war whose latest fetch changed
    since the last build (and was fetched within `wars_lookback_hours` of
    the newest fetch here) is replaced as a whole, so the order windows
    always see every attack of the war.
-#}

{{
    config(
        materialized='incremental',
        unique_key='war_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['war_id']},
            {'columns': ['attacker_tag']},
            {'columns': ['defender_tag']},
            {'columns': ['fetched_at']},
        ],
    )
}}

with

latest_fetches as (

    {{ war_latest_fetches([
        'war_id', 'clan_tag', 'our_side', 'war_type', 'fetch_id', 'fetched_at',
    ]) }}

),

fetched_attacks as (

    {{ rows_of_fetches('stg_coc__war_attacks') }}

),

fetched_members as (

    {{ rows_of_fetches('stg_coc__war_members') }}

),

joined as (

    select
        latest_fetches.war_id,
        latest_fetches.clan_tag,
        latest_fetches.war_type,
        latest_fetches.fetch_id,
        latest_fetches.fetched_at,
        fetched_attacks.attack_order,
        fetched_attacks.attacker_tag,
        fetched_attacks.attacker_clan_tag,
        fetched_attacks.defender_tag,
        fetched_attacks.defender_clan_tag,
        fetched_attacks.war_side = latest_fetches.our_side
            as is_our_clan_attack,
        fetched_attacks.attack_number,
        fetched_attacks.stars,
        fetched_attacks.destruction_pct,
        fetched_attacks.duration_seconds,
        fetched_attacks.attacker_town_hall_level,
        fetched_attacks.attacker_map_position,
        defenders.town_hall_level as defender_town_hall_level,
        defenders.map_position as defender_map_position

    from latest_fetches
    inner join fetched_attacks
        on latest_fetches.fetch_id = fetched_attacks.fetch_id
    left join fetched_members as defenders
        on
            fetched_attacks.fetch_id = defenders.fetch_id
            and fetched_attacks.defender_tag = defenders.player_tag

),

scored as (

    select
        *,
        coalesce(
            max(stars) over (
                partition by war_id, defender_tag
                order by attack_order
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as previous_best_stars

    from joined

),

final as (

    select
        -- ids
        war_id,
        clan_tag,
        attack_order,
        attacker_tag,
        attacker_clan_tag,
        defender_tag,
        defender_clan_tag,

        -- properties
        is_our_clan_attack,
        war_type,

        -- numbers
        attack_number,
        stars,
        destruction_pct,
        duration_seconds,
        attacker_town_hall_level,
        attacker_map_position,
        defender_town_hall_level,
        defender_map_position,
        attacker_town_hall_level - defender_town_hall_level
            as town_hall_difference,
        previous_best_stars,
        greatest(stars - previous_best_stars, 0) as new_stars,

        -- lineage
        fetch_id,
        fetched_at

    from scored

)

select * from final
