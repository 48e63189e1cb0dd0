{#-
    One row per war slot of a Clan War League group, per group fetch: the
    round (1-7) and the war tag. Rounds not yet scheduled carry the war tag
    '#0' (is_scheduled false).
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

group_fetches as (

    select * from payload_fetches
    where endpoint = 'leaguegroup'

),

rounds as (

    select
        group_fetches.*,
        round_item.league_round,
        round_item.round_number

    from group_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("group_fetches.body -> 'rounds'") }}
    ) with ordinality as round_item (league_round, round_number)

),

round_wars as (

    select
        rounds.*,
        war_item.war_tag,
        war_item.war_number

    from rounds
    cross join lateral jsonb_array_elements_text(
        {{ coc_json_array("rounds.league_round -> 'warTags'") }}
    ) with ordinality as war_item (war_tag, war_number)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(resource_tag, fetch_clan_tag) as clan_tag,
        body ->> 'season' as season,
        round_number::integer as round_number,
        war_number::integer as war_number,
        war_tag,

        -- properties
        coalesce(war_tag not in ('#0', '0', ''), false) as is_scheduled,

        -- timestamps
        fetched_at,
        snapshot_at

    from round_wars

)

select * from renamed
