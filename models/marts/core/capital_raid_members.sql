{#-
    One row per clan, raid weekend and member who raided: attacks, limits,
    capital gold looted, and from the attack log of the same fetch the
    districts the member finished and those destroyed in one hit.

    Which fetch: the latest fetch of the weekend that lists its members.
    The API drops `members` from older weekends (the real samples send them
    for the newest weekend only), so a later fetch without members never
    erases them.

    Finishers and one-hits. An attack's destructionPercent is the
    district's destruction after the attack (cumulative; the log lists a
    district's attacks newest first: 100, 64, 60, 54, 31). Ordered by
    destruction (then oldest first by list position), the attack before is
    the previous state of the district in that raid:
    - finisher: the attack took the district to 100 %;
    - one-hit: a finisher on a district at 0 % before it (no earlier
      attack in that raid, or only attacks that did nothing).

    Incremental, delete+insert by weekend (`capital_raids_lookback_hours`).
-#}

{{
    config(
        materialized='incremental',
        unique_key='raid_season_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['raid_season_id']},
            {'columns': ['player_tag']},
            {'columns': ['fetched_at']},
        ],
    )
}}

with

member_fetches as (

    select * from {{ ref('stg_coc__capital_raid_members') }}
    where
        clan_tag is not null
        and season_start_at is not null
        and player_tag is not null
        {% if is_incremental() %}
            and fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(
                hours => {{ var('capital_raids_lookback_hours', 72) }}
            )
        {% endif %}

),

identified as (

    select
        md5(concat_ws(
            '|',
            clan_tag,
            to_char(
                season_start_at at time zone 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            )
        )) as raid_season_id,
        *

    from member_fetches

),

latest_member_fetches as (

    select distinct on (raid_season_id)
        raid_season_id,
        clan_tag,
        season_start_at,
        fetch_id,
        fetched_at

    from identified
    {% if is_incremental() %}
        -- a weekend stored from a newer fetch (late-landed data) stays
        where
            not exists (
                select 1
                from {{ this }} as stored
                where
                    stored.raid_season_id = identified.raid_season_id
                    and stored.fetched_at > identified.fetched_at
            )
    {% endif %}
    order by raid_season_id asc, fetched_at desc, fetch_id desc

),

members as (

    select identified.*
    from identified
    inner join latest_member_fetches
        on
            identified.raid_season_id = latest_member_fetches.raid_season_id
            and identified.fetch_id = latest_member_fetches.fetch_id

),

logged_attacks as (

    select raid_attacks.*
    from {{ ref('stg_coc__capital_raid_attacks') }} as raid_attacks
    inner join latest_member_fetches
        on
            raid_attacks.fetch_id = latest_member_fetches.fetch_id
            and raid_attacks.season_start_at
            = latest_member_fetches.season_start_at
    where
        raid_attacks.fetched_at >= (
            select min(chosen.fetched_at)
            from latest_member_fetches as chosen
        )

),

attacks_in_order as (

    select
        *,
        lag(destruction_pct) over (
            partition by fetch_id, season_start_at, raid_number, district_id
            order by destruction_pct asc, attack_number desc
        ) as destruction_before_pct

    from logged_attacks

),

classified_attacks as (

    select
        *,
        destruction_pct >= 100 as is_finisher,
        destruction_pct >= 100 and coalesce(destruction_before_pct, 0) = 0
            as is_one_hit

    from attacks_in_order

),

attack_counts as (

    select
        fetch_id,
        season_start_at,
        attacker_tag,
        count(*) as logged_attacks,
        count(*) filter (where is_finisher) as finisher_count,
        count(*) filter (where is_one_hit) as one_hit_count

    from classified_attacks
    group by fetch_id, season_start_at, attacker_tag

),

final as (

    select
        -- ids
        members.raid_season_id,
        members.clan_tag,
        members.player_tag,

        -- properties
        members.player_name,

        -- numbers
        members.attacks,
        members.attack_limit,
        members.bonus_attack_limit,
        members.attack_limit + coalesce(members.bonus_attack_limit, 0)
            as attacks_allowed,
        members.capital_resources_looted,
        coalesce(attack_counts.logged_attacks, 0)::integer as logged_attacks,
        coalesce(attack_counts.finisher_count, 0)::integer as finisher_count,
        coalesce(attack_counts.one_hit_count, 0)::integer as one_hit_count,

        -- timestamps
        members.season_start_at,

        -- lineage
        members.fetch_id,
        members.fetched_at

    from members
    left join attack_counts
        on
            members.fetch_id = attack_counts.fetch_id
            and members.season_start_at = attack_counts.season_start_at
            and members.player_tag = attack_counts.attacker_tag

)

select * from final
