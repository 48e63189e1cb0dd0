{#-
    One row per player in the line-up of a war of ours, both sides, from
    the war's latest fetch: attacks allowed and used (participation),
    defences received and the best attack against them. A CWL war's
    line-up is the day's 15 or 30 players, not the whole league roster.

    Incremental, delete+insert by war, as war_attacks.
-#}

{{
    config(
        materialized='incremental',
        unique_key='war_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['war_id']},
            {'columns': ['player_tag']},
            {'columns': ['fetched_at']},
        ],
    )
}}

with

latest_fetches as (

    {{ war_latest_fetches([
        'war_id', 'clan_tag', 'our_side', 'war_type', 'attacks_per_member',
        'fetch_id', 'fetched_at',
    ]) }}

),

fetched_members as (

    {{ rows_of_fetches('stg_coc__war_members') }}

),

final as (

    select
        -- ids
        latest_fetches.war_id,
        latest_fetches.clan_tag,
        fetched_members.player_tag,
        fetched_members.clan_tag as player_clan_tag,

        -- properties
        fetched_members.war_side = latest_fetches.our_side
            as is_our_clan_member,
        latest_fetches.war_type,
        fetched_members.player_name,

        -- numbers
        fetched_members.town_hall_level,
        fetched_members.map_position,
        latest_fetches.attacks_per_member as attacks_allowed,
        fetched_members.attacks_used,
        fetched_members.defenses_received,
        fetched_members.best_opponent_stars,
        fetched_members.best_opponent_destruction_pct,

        -- lineage
        latest_fetches.fetch_id,
        latest_fetches.fetched_at

    from latest_fetches
    inner join fetched_members
        on latest_fetches.fetch_id = fetched_members.fetch_id

)

select * from final
