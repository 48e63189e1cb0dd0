{#-
    The roster the API and dashboards read: one row per (clan, player) of
    `members` (current and former members; filter is_current), with every
    column of members and the member's latest value of each metric as a
    column (metrics_roster_columns(): state metrics by name, windowed ones
    as <metric>_<window>), so nothing is computed on request.

    "Latest" is per metric: the value at the member's latest as_of that has
    the metric (rush needs a profile; a run without the member's profile
    carries the previous one forward, so rush is the latest snapshot's as
    soon as the member has one profile). metrics_as_of is the member's
    latest as_of; last_seen_at the latest snapshot where the member was
    active; profile_fetched_at (from the metrics row at metrics_as_of: the
    latest snapshot's member_snapshot_stats value) when the profile behind
    the profile columns and rush was fetched.

    league_tier_rank orders the ranked tiers (the league_tiers seed's
    tier_rank: 0 Unranked, 1 Skeleton League 1 ... 34 Legend League); an id
    the seed does not list yet (a later Legend tier) ranks by its offset from
    Unranked's id, so it sorts above the tiers the seed knows. NULL when the
    member has no tier (before the 2025 split). The API orders the roster by
    it, then ranked_trophies, then battle_mode_trophies.

    A table, rebuilt each run: one index probe on metrics' unique key
    (clan_tag, player_tag, metric_name, metric_window, as_of) per member and
    column, so its cost follows the number of members, not the history.
    The probes read the metrics relation directly (not an import CTE: a CTE
    referenced by every probe would be materialised as a whole).
-#}

{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['clan_tag', 'player_tag'], 'unique': True},
            {'columns': ['clan_tag', 'is_current']},
        ],
    )
}}

with

members as (

    select * from {{ ref('members') }}

),

league_tiers as (

    select * from {{ ref('league_tiers') }}

),

latest_metrics as (

    select
        members.clan_tag,
        members.player_tag,
        {%- for item in metrics_roster_columns().split(',') %}
            {%- set metric_name, metric_window, column = item.split(':') %}
            (
                select latest.value
                from {{ ref('metrics') }} as latest
                where
                    latest.clan_tag = members.clan_tag
                    and latest.player_tag = members.player_tag
                    and latest.metric_name = '{{ metric_name }}'
                    and latest.metric_window = '{{ metric_window }}'
                order by latest.as_of desc
                limit 1
            ) as {{ column }},
        {%- endfor %}
        (
            select (latest.components ->> 'last_seen_at')::timestamptz
            from {{ ref('metrics') }} as latest
            where
                latest.clan_tag = members.clan_tag
                and latest.player_tag = members.player_tag
                and latest.metric_name = 'days_since_last_seen'
                and latest.metric_window = 'latest'
            order by latest.as_of desc
            limit 1
        ) as last_seen_at,
        -- every snapshot of a member has its donations over 7 days
        (
            select latest.as_of
            from {{ ref('metrics') }} as latest
            where
                latest.clan_tag = members.clan_tag
                and latest.player_tag = members.player_tag
                and latest.metric_name = 'donations_given'
                and latest.metric_window = '7d'
            order by latest.as_of desc
            limit 1
        ) as metrics_as_of,
        -- the same row: when the latest snapshot's profile was fetched
        (
            select latest.profile_fetched_at
            from {{ ref('metrics') }} as latest
            where
                latest.clan_tag = members.clan_tag
                and latest.player_tag = members.player_tag
                and latest.metric_name = 'donations_given'
                and latest.metric_window = '7d'
            order by latest.as_of desc
            limit 1
        ) as profile_fetched_at

    from members

),

final as (

    select
        -- ids
        members.clan_tag,
        members.player_tag,

        -- properties
        {% for column in metrics_roster_member_columns().split(',') -%}
            members.{{ column | trim }},
        {% endfor -%}
        case
            when members.league_tier_id is not null
                then
                    coalesce(
                        league_tiers.tier_rank,
                        members.league_tier_id - {{ members_unranked_tier_id() }}
                    )
        end::integer as league_tier_rank,
        members.is_current,

        -- numbers
        members.stint_count,
        {% for item in metrics_roster_columns().split(',') -%}
            latest_metrics.{{ item.split(':')[2] }},
        {% endfor -%}

        -- timestamps
        members.first_seen_at,
        members.joined_at,
        members.left_at,
        members.updated_at,
        latest_metrics.last_seen_at,
        latest_metrics.metrics_as_of,
        latest_metrics.profile_fetched_at

    from members
    inner join latest_metrics
        on
            members.clan_tag = latest_metrics.clan_tag
            and members.player_tag = latest_metrics.player_tag
    left join league_tiers
        on members.league_tier_id = league_tiers.league_tier_id

)

select * from final
