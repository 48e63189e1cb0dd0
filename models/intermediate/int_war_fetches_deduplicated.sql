{#-
    One row per war per clan of ours: its latest fetch (currentwar or a CWL
    war by war tag), turned so that `clan_*` is our side and `opponent_*` the
    other side.

    Identity. A clan is in one war at a time, so (our clan, preparation
    start) names a war from our side whatever endpoint reported it:
        war_id = md5(our clan tag || '|' || preparation start, UTC ISO)
    The war log has no preparation time: int_war_log_entries_deduplicated
    keys its entries md5(clan tag || '|end ' || end time) and `wars` matches
    them to these rows; the two formulas are kept in step by hand.

    Our side. currentwar's `clan` is always the requesting clan. A CWL war
    body lists its two clans in no particular order and a run fetches every
    war of its league group, ours or not: the run's clan (fetch_clan_tag)
    says which side is ours, and wars it does not play in are dropped.

    ended_seen_at: when the pipeline first saw the war ended, the snapshot
    time (raw.fetch_runs.snapshot_at) of the first run whose fetch of the
    war said `warEnded` (NULL: not yet). A war's data is final from then
    on, so ACE counts a war at a snapshot only from that time
    (int_war_finals_observed): point-in-time, whatever was landed later.

    Incremental: fetches landed in the last `wars_lookback_hours` (default
    72) before the newest fetch already here are read again and merged with
    the stored row of the same war; the newest fetch wins (attacks and stars
    only grow). A backfill of fetches older than that needs --full-refresh.
-#}

{{
    config(
        materialized='incremental',
        unique_key='war_id',
        incremental_strategy='merge',
        on_schema_change='fail',
        indexes=[
            {'columns': ['war_id'], 'unique': True},
            {'columns': ['fetched_at']},
        ],
    )
}}

{%- set columns = [
    'war_id', 'clan_tag', 'opponent_tag', 'war_tag', 'fetch_id', 'our_side',
    'source', 'war_type', 'state', 'battle_modifier', 'clan_name',
    'opponent_name', 'team_size', 'attacks_per_member', 'clan_attacks',
    'clan_stars', 'clan_destruction_pct', 'opponent_attacks',
    'opponent_stars', 'opponent_destruction_pct', 'preparation_start_at',
    'start_at', 'end_at', 'fetched_at', 'ended_seen_at',
] %}

with

war_fetches as (

    select * from {{ ref('stg_coc__wars') }}
    where
        source_endpoint in ('currentwar', 'cwl_war')
        and state in ('preparation', 'inWar', 'warEnded')
        {% if is_incremental() %}
            and fetched_at >= (
                select coalesce(max(stored.fetched_at), '-infinity'::timestamptz)
                from {{ this }} as stored
            ) - make_interval(hours => {{ var('wars_lookback_hours', 72) }})
        {% endif %}

),

sided as (

    select
        *,
        case
            when source_endpoint = 'currentwar' then 'clan'
            when fetch_clan_tag is null then 'clan'
            when fetch_clan_tag = clan_tag then 'clan'
            when fetch_clan_tag = opponent_tag then 'opponent'
        end as our_side

    from war_fetches

),

oriented as (

    select
        fetch_id,
        our_side,
        source_endpoint as source,
        war_tag,
        case when our_side = 'clan' then clan_tag else opponent_tag end
            as clan_tag,
        case when our_side = 'clan' then opponent_tag else clan_tag end
            as opponent_tag,
        case
            when source_endpoint = 'cwl_war' or war_start_at is not null
                then 'cwl'
            -- regular wars: 23 h of preparation, 24 h of battle; friendly
            -- wars have their own lengths (5 min tolerance)
            when
                abs(extract(epoch from end_at - start_at) - 86400) > 300
                or abs(
                    extract(epoch from start_at - preparation_start_at)
                    - 82800
                ) > 300
                then 'friendly'
            else 'regular'
        end as war_type,
        state,
        battle_modifier,
        case when our_side = 'clan' then clan_name else opponent_name end
            as clan_name,
        case when our_side = 'clan' then opponent_name else clan_name end
            as opponent_name,
        team_size,
        attacks_per_member,
        case when our_side = 'clan' then clan_attacks else opponent_attacks end
            as clan_attacks,
        case when our_side = 'clan' then clan_stars else opponent_stars end
            as clan_stars,
        case
            when our_side = 'clan' then clan_destruction_pct
            else opponent_destruction_pct
        end as clan_destruction_pct,
        case when our_side = 'clan' then opponent_attacks else clan_attacks end
            as opponent_attacks,
        case when our_side = 'clan' then opponent_stars else clan_stars end
            as opponent_stars,
        case
            when our_side = 'clan' then opponent_destruction_pct
            else clan_destruction_pct
        end as opponent_destruction_pct,
        preparation_start_at,
        start_at,
        end_at,
        fetched_at,
        snapshot_at

    from sided
    where our_side is not null

),

identified as (

    select
        md5(concat_ws(
            '|',
            clan_tag,
            coalesce(
                to_char(
                    preparation_start_at at time zone 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                ),
                'end ' || to_char(
                    end_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                )
            )
        )) as war_id,
        clan_tag,
        opponent_tag,
        war_tag,
        fetch_id,
        our_side,
        source,
        war_type,
        state,
        battle_modifier,
        clan_name,
        opponent_name,
        team_size,
        -- not sent by CWL war bodies (one attack each) nor before 2022
        -- (two attacks each)
        coalesce(
            attacks_per_member,
            case when war_type = 'cwl' then 1 else 2 end
        ) as attacks_per_member,
        clan_attacks,
        clan_stars,
        clan_destruction_pct,
        opponent_attacks,
        opponent_stars,
        opponent_destruction_pct,
        preparation_start_at,
        start_at,
        end_at,
        fetched_at,
        case when state = 'warEnded' then snapshot_at end as ended_seen_at

    from oriented
    where clan_tag is not null

),

candidates as (

    select {{ columns | join(', ') }} from identified

    {% if is_incremental() %}
        union all

        select {{ columns | join(', ') }}
        from {{ this }}
        where war_id in (select identified.war_id from identified)
    {% endif %}

),

ranked as (

    select
        {{ columns | reject('equalto', 'ended_seen_at') | join(', ') }},
        min(ended_seen_at) over (partition by war_id) as ended_seen_at,
        row_number() over (
            partition by war_id
            order by fetched_at desc, fetch_id desc
        ) as recency

    from candidates

),

final as (

    select {{ columns | join(', ') }}
    from ranked
    where recency = 1

)

select * from final
