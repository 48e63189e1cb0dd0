{#-
    The derived metrics as one long table: one row per (clan, member,
    metric_name, metric_window, as_of), as_of being the clan snapshot's
    time, with the value and, in `components`, every input and intermediate
    it was computed from. Definitions: DOMAIN.md "Derived metrics" and the
    metric_catalogue seed (name, windows, unit, definition, inputs).

    The families come from the intermediate models, each incremental on the
    same per-clan snapshot watermark: int_member_rush_computed (hero and lab rush),
    int_member_flows_windowed (donations, activity, tenure),
    int_member_ace_combined (ACE and its components). Here they are unpivoted.

    profile_fetched_at, on every row, is when the profile behind the member's
    snapshot was fetched (member_snapshot_stats: the run's own, or carried
    from an earlier snapshot when the run has none; NULL without a profile),
    so a reader can tell how old the profile-based values (rush, the profile
    fields of activity) are.

    Incremental (delete+insert on the 5-column key): a build adds the rows of
    the clan's snapshots newer than the latest as_of stored for the clan and
    reads only those snapshots' rows from the intermediates (snapshot_id
    index), so the cost of a new snapshot does not grow with the history.
    Every value is a function of the data up to as_of: a full refresh gives
    the same rows.
-#}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=[
            'clan_tag', 'player_tag', 'metric_name', 'metric_window', 'as_of',
        ],
        on_schema_change='fail',
        indexes=[
            {
                'columns': [
                    'clan_tag', 'player_tag', 'metric_name', 'metric_window',
                    'as_of',
                ],
                'unique': True,
            },
            {'columns': ['clan_tag', 'metric_name', 'metric_window', 'as_of']},
            {'columns': ['clan_tag', 'as_of']},
        ],
    )
}}

with

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }}

),

new_snapshots as (

    select roster_snapshots.snapshot_id

    from roster_snapshots
    {{ after_clan_watermark('roster_snapshots', stored_time='as_of') }}

),

rush as (

    select * from {{ ref('int_member_rush_computed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

member_windows as (

    select * from {{ ref('int_member_flows_windowed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

member_profiles as (

    select
        snapshot_id,
        player_tag,
        profile_fetched_at

    from {{ ref('member_snapshot_stats') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

ace as (

    select * from {{ ref('int_member_ace_combined') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

rush_metrics as (

    select
        rush.snapshot_id,
        rush.clan_tag,
        rush.player_tag,
        rush.snapshot_at as as_of,
        unpivoted.metric_name,
        'latest' as metric_window,
        unpivoted.metric_value,
        unpivoted.components

    from rush
    cross join lateral (
        values
        (
            'hero_rush_pct',
            rush.hero_rush_pct,
            rush.hero_rush_components
        ),
        (
            'lab_rush_pct',
            rush.lab_rush_pct,
            rush.lab_rush_components
        )
    ) as unpivoted (metric_name, metric_value, components)

),

-- one row per member, snapshot and flow window
member_window_values as (

    select
        member_windows.snapshot_id,
        member_windows.clan_tag,
        member_windows.player_tag,
        member_windows.snapshot_at,
        member_windows.last_active_at,
        flow_windows.metric_window,
        flow_windows.window_start_at,
        flow_windows.given,
        flow_windows.received,
        flow_windows.observations,
        flow_windows.resets,
        flow_windows.active_days,
        flow_windows.active_snapshots

    from member_windows
    cross join
        lateral (
            values
            (
                '7d',
                member_windows.window_7d_start_at,
                member_windows.donations_given_7d,
                member_windows.donations_received_7d,
                member_windows.donation_observations_7d,
                member_windows.donation_resets_7d,
                member_windows.active_days_7d,
                member_windows.active_snapshots_7d
            ),
            (
                '30d',
                member_windows.window_30d_start_at,
                member_windows.donations_given_30d,
                member_windows.donations_received_30d,
                member_windows.donation_observations_30d,
                member_windows.donation_resets_30d,
                member_windows.active_days_30d,
                member_windows.active_snapshots_30d
            ),
            (
                'season',
                member_windows.window_season_start_at,
                member_windows.donations_given_season,
                member_windows.donations_received_season,
                member_windows.donation_observations_season,
                member_windows.donation_resets_season,
                member_windows.active_days_season,
                member_windows.active_snapshots_season
            )
        ) as flow_windows (
            metric_window,
            window_start_at,
            given,
            received,
            observations,
            resets,
            active_days,
            active_snapshots
        )

),

window_metrics as (

    select
        member_window_values.snapshot_id,
        member_window_values.clan_tag,
        member_window_values.player_tag,
        member_window_values.snapshot_at as as_of,
        unpivoted.metric_name,
        member_window_values.metric_window,
        unpivoted.metric_value,
        unpivoted.components

    from member_window_values
    cross join
        lateral (
            values
            (
                'donations_given',
                member_window_values.given::numeric,
                jsonb_build_object(
                    'window_start_at', member_window_values.window_start_at,
                    'given', member_window_values.given,
                    'observations', member_window_values.observations,
                    'resets', member_window_values.resets
                )
            ),
            (
                'donations_received',
                member_window_values.received::numeric,
                jsonb_build_object(
                    'window_start_at', member_window_values.window_start_at,
                    'received', member_window_values.received,
                    'observations', member_window_values.observations,
                    'resets', member_window_values.resets
                )
            ),
            (
                'donation_balance',
                (member_window_values.given - member_window_values.received)
                ::numeric,
                jsonb_build_object(
                    'window_start_at', member_window_values.window_start_at,
                    'given', member_window_values.given,
                    'received', member_window_values.received,
                    'observations', member_window_values.observations
                )
            ),
            (
                'donation_ratio',
                {{ metrics_round(
                    'member_window_values.given::numeric'
                    ~ ' / greatest(1, member_window_values.received)'
                ) }},
                jsonb_build_object(
                    'window_start_at', member_window_values.window_start_at,
                    'given', member_window_values.given,
                    'received', member_window_values.received,
                    'denominator', greatest(1, member_window_values.received),
                    'observations', member_window_values.observations
                )
            ),
            (
                'active_days',
                member_window_values.active_days::numeric,
                jsonb_build_object(
                    'window_start_at', member_window_values.window_start_at,
                    'active_snapshots', member_window_values.active_snapshots,
                    'last_active_at', member_window_values.last_active_at
                )
            )
        ) as unpivoted (metric_name, metric_value, components)

),

state_metrics as (

    select
        member_windows.snapshot_id,
        member_windows.clan_tag,
        member_windows.player_tag,
        member_windows.snapshot_at as as_of,
        unpivoted.metric_name,
        'latest' as metric_window,
        unpivoted.metric_value,
        unpivoted.components

    from member_windows
    cross join
        lateral (
            values
            (
                'days_since_last_seen',
                {{ metrics_round(metrics_days_between(
                    'member_windows.snapshot_at',
                    'member_windows.last_active_at'
                )) }},
                jsonb_build_object(
                    'last_seen_at', member_windows.last_active_at
                )
            ),
            (
                'tenure_days',
                member_windows.tenure_days,
                jsonb_build_object(
                    'joined_at', member_windows.joined_at,
                    'stint_number', member_windows.current_stint_number,
                    'is_initial_member', member_windows.is_initial_member
                )
            ),
            (
                'total_tenure_days',
                member_windows.total_tenure_days,
                jsonb_build_object(
                    'stint_count', member_windows.stint_count,
                    'stints', member_windows.stints,
                    'is_initial_member', member_windows.is_initial_member
                )
            )
        ) as unpivoted (metric_name, metric_value, components)

),

ace_metrics as (

    select
        ace.snapshot_id,
        ace.clan_tag,
        ace.player_tag,
        ace.snapshot_at as as_of,
        unpivoted.metric_name,
        ace.metric_window,
        unpivoted.metric_value,
        unpivoted.components

    from ace
    cross join lateral (
        values
        (
            'ace',
            ace.ace,
            jsonb_build_object(
                'window_start_at', ace.window_start_at,
                'core', ace.core,
                'sigma', ace.sigma,
                'avail', ace.avail,
                'ova', ace.ova,
                'dva', ace.dva,
                'par', ace.par,
                'cap', ace.cap,
                'don', ace.don,
                'weights', jsonb_build_object(
                    'ova', 0.4,
                    'dva', 0.15,
                    'par', 0.2,
                    'cap', 0.15,
                    'don', 0.1
                )
            )
        ),
        (
            'ace_ova',
            ace.ova,
            jsonb_build_object(
                'value', ace.ova_value,
                'n', ace.ova_n,
                'k', 6,
                'shrink', ace.ova_shrink,
                'median', ace.ova_value_median,
                'mad', ace.ova_value_mad,
                'z', ace.ova_value_z,
                'global_fallbacks', ace.ova_fallbacks,
                'clan_wars', ace.clan_war_count
            )
        ),
        (
            'ace_dva',
            ace.dva,
            jsonb_build_object(
                'value', ace.dva_value,
                'n', ace.dva_n,
                'k', 4,
                'shrink', ace.dva_shrink,
                'median', ace.dva_value_median,
                'mad', ace.dva_value_mad,
                'z', ace.dva_value_z,
                'global_fallbacks', ace.dva_fallbacks,
                'clan_wars', ace.clan_war_count
            )
        ),
        (
            'ace_par',
            ace.par,
            jsonb_build_object(
                'value', ace.par_value,
                'n', ace.par_n,
                'k', 0,
                'shrink', ace.par_shrink,
                'median', ace.par_value_median,
                'mad', ace.par_value_mad,
                'z', ace.par_value_z,
                'war_ratio', ace.par_war_ratio,
                'capital_ratio', ace.par_capital_ratio,
                'streak_share', ace.par_streak_share,
                'wars', ace.par_wars,
                'war_attacks_used', ace.par_war_attacks_used,
                'war_attacks_allowed', ace.par_war_attacks_allowed,
                'full_streak', ace.par_full_streak,
                'raid_weekends', ace.par_raid_weekends,
                'capital_attacks_used', ace.par_capital_attacks_used,
                'capital_attacks_allowed', ace.par_capital_attacks_allowed
            )
        ),
        (
            'ace_cap',
            ace.cap,
            jsonb_build_object(
                'n', ace.cap_n,
                'k', 8,
                'shrink', ace.cap_shrink,
                'looted', ace.cap_looted,
                'finishers', ace.cap_finishers,
                'one_hits', ace.cap_one_hits,
                'loot_per_attack', jsonb_build_object(
                    'value', ace.cap_loot_per_attack,
                    'median', ace.cap_loot_per_attack_median,
                    'mad', ace.cap_loot_per_attack_mad,
                    'z', ace.cap_loot_per_attack_z
                ),
                'finisher_rate', jsonb_build_object(
                    'value', ace.cap_finisher_rate,
                    'median', ace.cap_finisher_rate_median,
                    'mad', ace.cap_finisher_rate_mad,
                    'z', ace.cap_finisher_rate_z
                ),
                'one_hit_rate', jsonb_build_object(
                    'value', ace.cap_one_hit_rate,
                    'median', ace.cap_one_hit_rate_median,
                    'mad', ace.cap_one_hit_rate_mad,
                    'z', ace.cap_one_hit_rate_z
                )
            )
        ),
        (
            'ace_don',
            ace.don,
            jsonb_build_object(
                'n', ace.don_n,
                'k', 0,
                'shrink', ace.don_shrink,
                'given', ace.don_given,
                'received', ace.don_received,
                'ratio', ace.don_ratio,
                'ratio_p99', ace.don_ratio_p99,
                'balance', jsonb_build_object(
                    'value', ace.don_balance,
                    'median', ace.don_balance_median,
                    'mad', ace.don_balance_mad,
                    'z', ace.don_balance_z
                ),
                'ratio_capped', jsonb_build_object(
                    'value', ace.don_ratio_capped,
                    'median', ace.don_ratio_capped_median,
                    'mad', ace.don_ratio_capped_mad,
                    'z', ace.don_ratio_capped_z
                )
            )
        ),
        (
            'ace_avail',
            ace.avail,
            jsonb_build_object(
                'active_days_30d', ace.avail_active_days,
                'full_at_days', 26
            )
        )
    ) as unpivoted (metric_name, metric_value, components)

),

unioned as (

    select * from rush_metrics
    union all
    select * from window_metrics
    union all
    select * from state_metrics
    union all
    select * from ace_metrics

),

final as (

    select
        -- ids
        unioned.clan_tag,
        unioned.player_tag,
        unioned.metric_name,
        unioned.metric_window,
        unioned.snapshot_id,

        -- numbers
        unioned.metric_value as value,

        -- properties
        unioned.components,

        -- timestamps
        unioned.as_of,
        member_profiles.profile_fetched_at

    from unioned
    left join member_profiles
        on
            unioned.snapshot_id = member_profiles.snapshot_id
            and unioned.player_tag = member_profiles.player_tag
    where unioned.metric_value is not null

)

select * from final
