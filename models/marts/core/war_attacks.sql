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
        on_schema_change='append_new_columns',
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

    select
        latest.war_id,
        latest.clan_tag,
        latest.our_side,
        latest.war_type,
        latest.fetch_id,
        latest.fetched_at

    from {{ ref('int_war_fetches_deduplicated') }} as latest
    {% if is_incremental() %}
        where
            latest.fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(hours => {{ var('wars_lookback_hours', 72) }})
            and not exists (
                select 1
                from {{ this }} as stored
                where
                    stored.war_id = latest.war_id
                    and stored.fetch_id = latest.fetch_id
            )
    {% endif %}

),

fetched_attacks as (

    select * from {{ ref('stg_coc__war_attacks') }}
    where
        fetch_id in (select latest_fetches.fetch_id from latest_fetches)
        and fetched_at >= (
            select min(latest_fetches.fetched_at) from latest_fetches
        )

),

fetched_members as (

    select * from {{ ref('stg_coc__war_members') }}
    where
        fetch_id in (select latest_fetches.fetch_id from latest_fetches)
        and fetched_at >= (
            select min(latest_fetches.fetched_at) from latest_fetches
        )

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
