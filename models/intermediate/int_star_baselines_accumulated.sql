{#-
    Expected new stars of a war attack, for ACE's OVA and DVA: the mean and
    standard deviation of war_attacks.new_stars per bucket of (attacker
    town hall - defender town hall, clamped to -3..+3; previous best stars
    on the defender, 0..3), over every attack in the warehouse (all clans,
    both directions) of the regular and CWL wars that ended by a given
    time, plus a global bucket over all attacks (also those with an unknown
    town hall difference), the fallback for a bucket without data.

    Point in time: a war counts from greatest(its end, the first snapshot
    that saw it ended: int_war_finals_observed.final_seen_at), so the
    baseline at as_of holds only wars whose final attacks had been fetched
    by as_of; a war never seen ended is left out.

    One row per bucket and war end time at which the bucket's data changed:
    the cumulative count, mean and SD from valid_from_at (that war end) until
    valid_to_at (the bucket's next change; NULL: still valid). The baseline
    at as_of is the row with valid_from_at <= as_of < valid_to_at, so every
    as_of sees exactly the wars ended by then (full refresh = incremental).
    sd_floored = greatest(0.35, SD) (DOMAIN.md's SD floor). Population SD;
    statistics rounded to 6 decimals.

    A view: a few rows per war, aggregated from war_attacks (a few thousand
    rows per clan and quarter) when the ACE model reads it.
-#}

{{ config(materialized='view') }}

with

wars as (

    select * from {{ ref('wars') }}
    where war_type in ('regular', 'cwl')

),

war_finals as (

    select * from {{ ref('int_war_finals_observed') }}

),

war_attacks as (

    select * from {{ ref('war_attacks') }}

),

attacks as (

    select
        -- the war counts from its end, once the pipeline has seen it ended
        greatest(wars.end_at, war_finals.final_seen_at) as end_at,
        {{ metrics_clamp('war_attacks.town_hall_difference', -3, 3) }}
            as town_hall_difference,
        war_attacks.previous_best_stars,
        war_attacks.new_stars::float8 as new_stars

    from war_attacks
    inner join wars
        on war_attacks.war_id = wars.war_id
    inner join war_finals
        on wars.war_id = war_finals.war_id
    where wars.end_at is not null

),

per_war_end as (

    select
        end_at,
        false as is_global,
        town_hall_difference,
        previous_best_stars,
        count(*) as attack_count,
        sum(new_stars) as stars_sum,
        sum(new_stars * new_stars) as stars_square_sum

    from attacks
    where town_hall_difference is not null
    group by end_at, town_hall_difference, previous_best_stars

    union all

    select
        end_at,
        true as is_global,
        null::integer as town_hall_difference,
        null::integer as previous_best_stars,
        count(*) as attack_count,
        sum(new_stars) as stars_sum,
        sum(new_stars * new_stars) as stars_square_sum

    from attacks
    group by end_at

),

cumulative as (

    select
        is_global,
        town_hall_difference,
        previous_best_stars,
        end_at as valid_from_at,
        lead(end_at) over bucket_history as valid_to_at,
        sum(attack_count) over bucket_history as attack_count,
        sum(stars_sum) over bucket_history as stars_sum,
        sum(stars_square_sum) over bucket_history as stars_square_sum

    from per_war_end
    window bucket_history as (
        partition by is_global, town_hall_difference, previous_best_stars
        order by end_at
    )

),

final as (

    {%- set sd -%}
        sqrt(
            greatest(
                0,
                stars_square_sum / attack_count
                - power(stars_sum / attack_count, 2)
            )
        )
    {%- endset %}

    select
        -- ids
        case
            when is_global then 'all'
            else
                town_hall_difference::text
                || '/' || previous_best_stars::text
        end as bucket_key,

        -- properties
        is_global,

        -- numbers
        town_hall_difference,
        previous_best_stars,
        attack_count::integer as attack_count,
        {{ metrics_round('stars_sum / attack_count') }} as mean_new_stars,
        {{ metrics_round(sd) }} as sd_new_stars,
        {{ metrics_round('greatest(0.35, ' ~ sd ~ ')') }} as sd_floored,

        -- timestamps
        valid_from_at,
        valid_to_at

    from cumulative

)

select * from final
