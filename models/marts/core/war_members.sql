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
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['war_id']},
            {'columns': ['player_tag']},
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
        latest.attacks_per_member,
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

fetched_members as (

    select * from {{ ref('stg_coc__war_members') }}
    where
        fetch_id in (select latest_fetches.fetch_id from latest_fetches)
        and fetched_at >= (
            select min(latest_fetches.fetched_at) from latest_fetches
        )

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
