{#-
    One row per war per clan of ours, with its latest known state: the
    latest fetch of the war (currentwar, CWL war) completed by its war log
    entry (result, final totals), or the war log entry alone for wars never
    fetched while they ran. See _core__wars.yml for the identity rules.

    A table: its inputs are the two incremental intermediate models, one row
    per war each (a few hundred a year per clan), so a rebuild is cheap.
-#}

{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['clan_tag', 'end_at']},
        ],
    )
}}

with

fetched as (

    select * from {{ ref('int_war_fetches_deduplicated') }}

),

logged as (

    select * from {{ ref('int_war_log_entries_deduplicated') }}

),

-- A war log entry is the fetched war of the same clan and opponent that
-- ended within an hour of it (CWL wars are never in the war log one by one).
candidate_matches as (

    select
        logged.log_war_id,
        fetched.war_id,
        row_number() over (
            partition by logged.log_war_id
            order by abs(extract(epoch from fetched.end_at - logged.end_at))
        ) as log_rank,
        row_number() over (
            partition by fetched.war_id
            order by abs(extract(epoch from fetched.end_at - logged.end_at))
        ) as war_rank

    from logged
    inner join fetched
        on
            logged.clan_tag = fetched.clan_tag
            and logged.opponent_tag = fetched.opponent_tag
            and fetched.war_type <> 'cwl'
            and fetched.end_at
            between logged.end_at - interval '1 hour'
            and logged.end_at + interval '1 hour'

),

matches as (

    select
        log_war_id,
        war_id

    from candidate_matches
    where log_rank = 1 and war_rank = 1

),

fetched_wars as (

    select
        fetched.war_id,
        fetched.clan_tag,
        fetched.opponent_tag,
        fetched.war_tag,
        -- a war in the war log is not a friendly war
        case
            when logged.log_war_id is not null then 'regular'
            else fetched.war_type
        end as war_type,
        case
            when logged.log_war_id is not null then 'warEnded'
            else fetched.state
        end as state,
        -- the war log's totals are final; a fetch's only when it ended
        logged.log_war_id is not null and fetched.state <> 'warEnded'
            as is_final_from_war_log,
        logged.log_war_id is not null as has_war_log_entry,
        fetched.source as fetch_source,
        fetched.fetch_id as war_fetch_id,
        logged.fetch_id as log_fetch_id,
        logged.result as log_result,
        coalesce(fetched.battle_modifier, logged.battle_modifier)
            as battle_modifier,
        coalesce(fetched.clan_name, logged.clan_name) as clan_name,
        coalesce(fetched.opponent_name, logged.opponent_name)
            as opponent_name,
        coalesce(fetched.team_size, logged.team_size) as team_size,
        coalesce(logged.attacks_per_member, fetched.attacks_per_member)
            as attacks_per_member,
        fetched.clan_attacks as fetch_clan_attacks,
        fetched.clan_stars as fetch_clan_stars,
        fetched.clan_destruction_pct as fetch_clan_destruction_pct,
        fetched.opponent_stars as fetch_opponent_stars,
        fetched.opponent_destruction_pct as fetch_opponent_destruction_pct,
        logged.clan_attacks as log_clan_attacks,
        logged.clan_stars as log_clan_stars,
        logged.clan_destruction_pct as log_clan_destruction_pct,
        logged.opponent_stars as log_opponent_stars,
        logged.opponent_destruction_pct as log_opponent_destruction_pct,
        fetched.opponent_attacks,
        logged.clan_exp_earned,
        fetched.preparation_start_at,
        fetched.start_at,
        fetched.end_at,
        greatest(fetched.fetched_at, logged.fetched_at) as last_fetched_at

    from fetched
    left join matches
        on fetched.war_id = matches.war_id
    left join logged
        on matches.log_war_id = logged.log_war_id

),

fetched_states as (

    select
        war_id,
        clan_tag,
        opponent_tag,
        war_tag,
        war_type,
        state,
        case when is_final_from_war_log then 'warlog' else fetch_source end
            as source,
        case when is_final_from_war_log then log_fetch_id else war_fetch_id end
            as fetch_id,
        log_result,
        has_war_log_entry,
        battle_modifier,
        clan_name,
        opponent_name,
        team_size,
        attacks_per_member,
        case
            when is_final_from_war_log then log_clan_attacks
            else fetch_clan_attacks
        end as clan_attacks,
        case
            when is_final_from_war_log then log_clan_stars
            else fetch_clan_stars
        end as clan_stars,
        case
            when is_final_from_war_log then log_clan_destruction_pct
            else fetch_clan_destruction_pct
        end as clan_destruction_pct,
        opponent_attacks,
        case
            when is_final_from_war_log then log_opponent_stars
            else fetch_opponent_stars
        end as opponent_stars,
        case
            when is_final_from_war_log then log_opponent_destruction_pct
            else fetch_opponent_destruction_pct
        end as opponent_destruction_pct,
        clan_exp_earned,
        preparation_start_at,
        start_at,
        end_at,
        last_fetched_at

    from fetched_wars

),

log_only_states as (

    select
        logged.log_war_id as war_id,
        logged.clan_tag,
        logged.opponent_tag,
        null::text as war_tag,
        'regular' as war_type,
        'warEnded' as state,
        'warlog' as source,
        logged.fetch_id,
        logged.result as log_result,
        true as has_war_log_entry,
        logged.battle_modifier,
        logged.clan_name,
        logged.opponent_name,
        logged.team_size,
        -- not sent before 2022, when every regular war had two attacks
        coalesce(logged.attacks_per_member, 2) as attacks_per_member,
        logged.clan_attacks,
        logged.clan_stars,
        logged.clan_destruction_pct,
        null::integer as opponent_attacks,
        logged.opponent_stars,
        logged.opponent_destruction_pct,
        logged.clan_exp_earned,
        null::timestamptz as preparation_start_at,
        null::timestamptz as start_at,
        logged.end_at,
        logged.fetched_at as last_fetched_at

    from logged
    where
        not exists (
            select 1 from matches
            where matches.log_war_id = logged.log_war_id
        )

),

war_states as (

    select * from fetched_states
    union all
    select * from log_only_states

),

final as (

    select
        -- ids
        war_id,
        clan_tag,
        opponent_tag,
        war_tag,

        -- properties
        war_type,
        state,
        coalesce(
            log_result,
            case
                when state <> 'warEnded' then null
                when clan_stars > opponent_stars then 'win'
                when clan_stars < opponent_stars then 'lose'
                when clan_destruction_pct > opponent_destruction_pct
                    then 'win'
                when clan_destruction_pct < opponent_destruction_pct
                    then 'lose'
                when clan_stars is not null then 'tie'
            end
        ) as result,
        log_result is null and state = 'warEnded' as is_result_computed,
        source,
        has_war_log_entry,
        battle_modifier,
        clan_name,
        opponent_name,

        -- numbers
        team_size,
        attacks_per_member,
        team_size * attacks_per_member as clan_attacks_allowed,
        clan_attacks,
        clan_stars,
        clan_destruction_pct,
        opponent_attacks,
        opponent_stars,
        opponent_destruction_pct,
        clan_exp_earned,

        -- timestamps
        preparation_start_at,
        start_at,
        end_at,
        last_fetched_at,

        -- lineage
        fetch_id

    from war_states

)

select * from final
