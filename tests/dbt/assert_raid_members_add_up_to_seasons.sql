{#-
    For every raid weekend whose member list comes from the weekend's
    latest fetch, the members add up to the weekend: attacks to
    total_attacks, loot to capital_total_loot, logged attacks to
    total_attacks and finishing attacks to enemy_districts_destroyed (each
    destroyed district has exactly one finisher).
-#}

with

seasons as (

    select * from {{ ref('capital_raid_seasons') }}

),

members as (

    select * from {{ ref('capital_raid_members') }}

),

member_totals as (

    select
        raid_season_id,
        fetch_id,
        sum(attacks) as attacks,
        sum(capital_resources_looted) as capital_resources_looted,
        sum(logged_attacks) as logged_attacks,
        sum(finisher_count) as finishers

    from members
    group by raid_season_id, fetch_id

),

compared as (

    select
        seasons.raid_season_id,
        seasons.total_attacks,
        member_totals.attacks,
        member_totals.logged_attacks,
        seasons.capital_total_loot,
        member_totals.capital_resources_looted,
        seasons.enemy_districts_destroyed,
        member_totals.finishers

    from seasons
    inner join member_totals
        on
            seasons.raid_season_id = member_totals.raid_season_id
            and seasons.fetch_id = member_totals.fetch_id

)

select * from compared
where
    total_attacks is distinct from attacks
    or total_attacks is distinct from logged_attacks
    or capital_total_loot is distinct from capital_resources_looted
    or enemy_districts_destroyed is distinct from finishers
