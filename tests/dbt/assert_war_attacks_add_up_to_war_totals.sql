{#-
    For every war whose state and totals come from a fetch (not the war
    log), the attacks read from that same fetch add up to the war's totals:
    each side's attacks count its attacks used, and its new stars sum to
    its stars (a side's stars are the best stars per defender, summed).
    A mismatch means attacks were lost, counted twice or put on the wrong
    side.
-#}

with

wars as (

    select * from {{ ref('wars') }}
    where source in ('currentwar', 'cwl_war')

),

war_attacks as (

    select * from {{ ref('war_attacks') }}

),

attack_totals as (

    select
        war_id,
        fetch_id,
        count(*) filter (where is_our_clan_attack) as clan_attacks,
        coalesce(sum(new_stars) filter (where is_our_clan_attack), 0)
            as clan_stars,
        count(*) filter (where not is_our_clan_attack) as opponent_attacks,
        coalesce(sum(new_stars) filter (where not is_our_clan_attack), 0)
            as opponent_stars

    from war_attacks
    group by war_id, fetch_id

),

compared as (

    select
        wars.war_id,
        wars.fetch_id as war_fetch_id,
        attack_totals.fetch_id as attacks_fetch_id,
        wars.clan_attacks,
        coalesce(attack_totals.clan_attacks, 0) as attacked_clan_attacks,
        wars.clan_stars,
        coalesce(attack_totals.clan_stars, 0) as attacked_clan_stars,
        wars.opponent_attacks,
        coalesce(attack_totals.opponent_attacks, 0)
            as attacked_opponent_attacks,
        wars.opponent_stars,
        coalesce(attack_totals.opponent_stars, 0) as attacked_opponent_stars

    from wars
    left join attack_totals
        on wars.war_id = attack_totals.war_id

)

select * from compared
where
    attacks_fetch_id is distinct from war_fetch_id
    and attacks_fetch_id is not null
    or clan_attacks is distinct from attacked_clan_attacks
    or clan_stars is distinct from attacked_clan_stars
    or opponent_attacks is distinct from attacked_opponent_attacks
    or opponent_stars is distinct from attacked_opponent_stars
