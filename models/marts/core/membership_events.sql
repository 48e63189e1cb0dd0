{#-
    One row per membership event, from the stints: a `join` (first stint)
    or `rejoin` (later stints) at the stint's first snapshot, and a `leave`
    at the first snapshot of the clan without the member. The event happened
    between the previous snapshot of the clan and event_at; the API has no
    join date. A join at the clan's first snapshot (is_initial_member) is the
    start of tracking, not a real join.

    A table: rebuilt from membership_stints (one row per stint, a few per
    member), cheap whatever the number of snapshots.
-#}

{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['event_id'], 'unique': True},
            {'columns': ['clan_tag', 'event_at']},
            {'columns': ['player_tag']},
        ],
    )
}}

with

membership_stints as (

    select * from {{ ref('membership_stints') }}

),

member_snapshot_stats as (

    select * from {{ ref('member_snapshot_stats') }}

),

arrivals as (

    select
        clan_tag,
        player_tag,
        stint_number,
        case when stint_number = 1 then 'join' else 'rejoin' end as event_type,
        first_snapshot_id as snapshot_id,
        -- the member as first seen in the stint
        first_snapshot_id as seen_snapshot_id,
        is_initial_member,
        joined_at as event_at

    from membership_stints

),

departures as (

    select
        clan_tag,
        player_tag,
        stint_number,
        'leave' as event_type,
        left_snapshot_id as snapshot_id,
        -- the member as last seen before leaving
        last_snapshot_id as seen_snapshot_id,
        false as is_initial_member,
        left_at as event_at

    from membership_stints
    where left_at is not null

),

events as (

    select * from arrivals
    union all
    select * from departures

),

final as (

    select
        -- ids
        md5(
            events.clan_tag || '|' || events.player_tag || '|'
            || events.stint_number::text || '|' || events.event_type
        ) as event_id,
        events.clan_tag,
        events.player_tag,
        events.stint_number,
        events.snapshot_id,

        -- properties
        events.event_type,
        member_snapshot_stats.name,
        member_snapshot_stats.role,
        events.is_initial_member,

        -- numbers
        member_snapshot_stats.town_hall_level,

        -- timestamps
        events.event_at

    from events
    left join member_snapshot_stats
        on
            events.seen_snapshot_id = member_snapshot_stats.snapshot_id
            and events.player_tag = member_snapshot_stats.player_tag

)

select * from final
