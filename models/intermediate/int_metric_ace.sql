{#-
    ACE ("All-Mode Clan Excellence", DOMAIN.md "Derived metrics") of every
    member of a clan snapshot, for the windows 30d (as_of - 30 days, as_of]
    and season (season start, as_of], with every input kept:

      ACE  = 100 * sigma(core) * AVAIL
      sigma(x) = 1 / (1 + e^(-1.1 * clamp(x, -6, 6)))
      core = 0.40 OVA + 0.15 DVA + 0.20 PAR + 0.15 CAP + 0.10 DON

    Each component is a robust z-score across the members of the snapshot,
    z = (v - median) / (1.4826 MAD), 0 when MAD = 0 or v is missing (a
    member without a sample), shrunk by n / (n + k) (k = 6 attacks for OVA,
    4 defences for DVA, 8 capital attacks for CAP, 0 for PAR and DON, so
    they count fully from n = 1). Inputs are real wars and raid weekends of
    the clan that ended in the window (wars: regular and CWL, by end_at;
    raid weekends: by end_at, those whose member list was fetched):

    - OVA: per attack by the member, (new stars - expected) / SD of the
      attack's bucket at as_of (int_star_baselines_accumulated; global bucket
      when the bucket has no data), weighted 0.75^(wars ago: 0 for the
      clan's latest war in the window), summed; n = attacks.
    - DVA: per attack on the member, (expected - new stars conceded) / SD,
      same weights; n = defences.
    - PAR: 0.55 war attacks used / allowed + 0.30 capital attacks used /
      allowed + 0.15 full-participation streak share, ratios clamped to
      [0, 1.5]. Wars: those whose line-up had the member. Capital: weekends
      the member raided, or was in the clan for (membership_stints) without
      raiding: 0 attacks of the weekend's base attack limit. Streak share:
      the member's latest wars in a row with every allowed attack used,
      divided by the member's wars. A term without opportunities adds 0;
      n = wars + weekends.
    - CAP: 0.6 z(loot per capital attack) + 0.2 z(finisher rate) + 0.2
      z(one-hit rate), each a robust z; n = capital attacks.
    - DON: clamp(z(given - received) + 0.5 z(min(ratio, p99 of the
      roster's ratios)), -2.5, 2.5) over the window's donations
      (int_member_flows_windowed; ratio = given / max(1, received));
      n = donation observations in the window.
    - AVAIL = clamp(0.85 + 0.15 min(1, active days in the last 30 / 26),
      0.70, 1.05), the same for both windows.

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    only the clan's snapshots newer than the latest stored one; wars, raid
    weekends and their attacks are read for the batch's windows (at most 35
    days) through the marts' clan/time and war indexes.

    Planning: the aggregating CTEs are `materialized` and the table is
    analyzed after a build that grew it by > 10 % (post_hook analyze_if_grown:
    a routine build skips it). Right after a load the planner's
    statistics are stale (a batch of new runs looks like a few rows) and it
    would re-run an inlined aggregate inside a nested loop once per row.
-#}

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['snapshot_id', 'player_tag', 'metric_window'],
        on_schema_change='fail',
        post_hook='{{ analyze_if_grown() }}',
        indexes=[
            {
                'columns': ['snapshot_id', 'player_tag', 'metric_window'],
                'unique': True,
            },
            {'columns': ['clan_tag', 'snapshot_at']},
        ],
    )
}}

{#- the robust z inputs: the column holding v, one median/MAD/z each -#}
{%- set z_inputs = [
    'ova_value', 'dva_value', 'par_value',
    'cap_loot_per_attack', 'cap_finisher_rate', 'cap_one_hit_rate',
    'don_balance', 'don_ratio_capped',
] %}

with

roster_snapshots as (

    select * from {{ ref('roster_snapshots') }}

),

game_calendar as (

    select * from {{ ref('game_calendar') }}

),

new_snapshots as (

    select
        roster_snapshots.snapshot_id,
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_at

    from roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

snapshot_windows as (

    select
        new_snapshots.snapshot_id,
        new_snapshots.clan_tag,
        new_snapshots.snapshot_at,
        ace_windows.metric_window,
        case ace_windows.metric_window
            when '30d' then new_snapshots.snapshot_at - interval '30 days'
            else {{ metrics_season_start('new_snapshots.snapshot_at') }}
        end as window_start_at

    from new_snapshots
    cross join game_calendar
    cross join (
        values ('30d'), ('season')
    ) as ace_windows (metric_window)

),

read_bounds as (

    select
        clan_tag,
        min(window_start_at) as read_from_at,
        max(snapshot_at) as read_to_at

    from snapshot_windows
    group by clan_tag

),

member_windows as (

    select * from {{ ref('int_member_flows_windowed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

wars as (

    select batch_wars.*
    from {{ ref('wars') }} as batch_wars
    inner join read_bounds
        on
            batch_wars.clan_tag = read_bounds.clan_tag
            and batch_wars.end_at > read_bounds.read_from_at
            and batch_wars.end_at <= read_bounds.read_to_at
    where batch_wars.war_type in ('regular', 'cwl')

),

war_attacks as (

    select * from {{ ref('war_attacks') }}
    where war_id = any(array(select wars.war_id from wars))

),

war_members as (

    select
        war_id,
        player_tag,
        coalesce(attacks_used, 0) as attacks_used,
        coalesce(attacks_allowed, 0) as attacks_allowed

    from {{ ref('war_members') }}
    where
        war_id = any(array(select wars.war_id from wars))
        and is_our_clan_member

),

capital_raid_seasons as (

    select batch_raids.*
    from {{ ref('capital_raid_seasons') }} as batch_raids
    inner join read_bounds
        on
            batch_raids.clan_tag = read_bounds.clan_tag
            and batch_raids.end_at > read_bounds.read_from_at
            and batch_raids.end_at <= read_bounds.read_to_at

),

capital_raid_members as (

    select * from {{ ref('capital_raid_members') }}
    where
        raid_season_id = any(
            array(
                select capital_raid_seasons.raid_season_id
                from capital_raid_seasons
            )
        )

),

star_baselines as (

    select * from {{ ref('int_star_baselines_accumulated') }}

),

membership_stints as (

    select * from {{ ref('membership_stints') }}

),

-- the members of each snapshot, per window, with the window's donations
roster as (

    select
        snapshot_windows.snapshot_id,
        snapshot_windows.clan_tag,
        snapshot_windows.metric_window,
        snapshot_windows.window_start_at,
        snapshot_windows.snapshot_at,
        member_windows.player_tag,
        case snapshot_windows.metric_window
            when '30d' then member_windows.donations_given_30d
            else member_windows.donations_given_season
        end as don_given,
        case snapshot_windows.metric_window
            when '30d' then member_windows.donations_received_30d
            else member_windows.donations_received_season
        end as don_received,
        case snapshot_windows.metric_window
            when '30d' then member_windows.donation_observations_30d
            else member_windows.donation_observations_season
        end as don_n,
        member_windows.active_days_30d as avail_active_days

    from snapshot_windows
    inner join member_windows
        on snapshot_windows.snapshot_id = member_windows.snapshot_id

),

-- the clan's wars that ended in each window; 0 wars ago = the latest
window_wars as (

    select
        snapshot_windows.snapshot_id,
        snapshot_windows.metric_window,
        snapshot_windows.snapshot_at,
        wars.war_id,
        row_number() over (
            partition by
                snapshot_windows.snapshot_id, snapshot_windows.metric_window
            order by wars.end_at desc, wars.war_id desc
        ) - 1 as wars_ago

    from snapshot_windows
    inner join wars
        on
            snapshot_windows.clan_tag = wars.clan_tag
            and snapshot_windows.window_start_at < wars.end_at
            and snapshot_windows.snapshot_at >= wars.end_at

),

window_war_counts as materialized (

    select
        snapshot_id,
        metric_window,
        count(*)::integer as clan_war_count

    from window_wars
    group by snapshot_id, metric_window

),

scored_attacks as (

    select
        window_wars.snapshot_id,
        window_wars.metric_window,
        window_wars.wars_ago,
        war_attacks.is_our_clan_attack,
        war_attacks.attacker_tag,
        war_attacks.defender_tag,
        war_attacks.new_stars,
        power(0.75, window_wars.wars_ago) as decay,
        coalesce(bucket.mean_new_stars, global.mean_new_stars)
            as expected_new_stars,
        coalesce(bucket.sd_floored, global.sd_floored) as sd_new_stars,
        bucket.bucket_key is null as is_global_fallback

    from window_wars
    inner join war_attacks
        on window_wars.war_id = war_attacks.war_id
    left join star_baselines as bucket
        on
            not bucket.is_global
            and bucket.town_hall_difference = {{ metrics_clamp(
                'war_attacks.town_hall_difference', -3, 3
            ) }}
            and war_attacks.previous_best_stars = bucket.previous_best_stars
            and window_wars.snapshot_at >= bucket.valid_from_at
            and (
                bucket.valid_to_at is null
                or window_wars.snapshot_at < bucket.valid_to_at
            )
    left join star_baselines as global
        on
            global.is_global
            and window_wars.snapshot_at >= global.valid_from_at
            and (
                global.valid_to_at is null
                or window_wars.snapshot_at < global.valid_to_at
            )

),

offence as materialized (

    select
        snapshot_id,
        metric_window,
        attacker_tag as player_tag,
        sum(
            decay * (new_stars - expected_new_stars) / sd_new_stars
        ) as ova_value,
        count(*)::integer as ova_n,
        count(*) filter (where is_global_fallback)::integer as ova_fallbacks

    from scored_attacks
    where is_our_clan_attack
    group by snapshot_id, metric_window, attacker_tag

),

defence as materialized (

    select
        snapshot_id,
        metric_window,
        defender_tag as player_tag,
        sum(
            decay * (expected_new_stars - new_stars) / sd_new_stars
        ) as dva_value,
        count(*)::integer as dva_n,
        count(*) filter (where is_global_fallback)::integer as dva_fallbacks

    from scored_attacks
    where not is_our_clan_attack
    group by snapshot_id, metric_window, defender_tag

),

lineups as (

    select
        window_wars.snapshot_id,
        window_wars.metric_window,
        war_members.player_tag,
        war_members.attacks_used,
        war_members.attacks_allowed,
        -- non-full wars so far, latest war first
        count(*) filter (
            where war_members.attacks_used < war_members.attacks_allowed
        ) over (
            partition by
                window_wars.snapshot_id,
                window_wars.metric_window,
                war_members.player_tag
            order by window_wars.wars_ago
            rows between unbounded preceding and current row
        ) as misses_so_far

    from window_wars
    inner join war_members
        on window_wars.war_id = war_members.war_id

),

war_participation as materialized (

    select
        snapshot_id,
        metric_window,
        player_tag,
        count(*)::integer as war_count,
        sum(attacks_used)::integer as war_attacks_used,
        sum(attacks_allowed)::integer as war_attacks_allowed,
        count(*) filter (where misses_so_far = 0)::integer as full_streak

    from lineups
    group by snapshot_id, metric_window, player_tag

),

-- the base attack limit of each weekend with a member list
raid_limits as materialized (

    select
        raid_season_id,
        max(attack_limit) as base_attack_limit

    from capital_raid_members
    group by raid_season_id

),

window_raids as (

    select
        snapshot_windows.snapshot_id,
        snapshot_windows.metric_window,
        capital_raid_seasons.raid_season_id,
        capital_raid_seasons.start_at,
        capital_raid_seasons.end_at,
        raid_limits.base_attack_limit

    from snapshot_windows
    inner join capital_raid_seasons
        on
            snapshot_windows.clan_tag = capital_raid_seasons.clan_tag
            and snapshot_windows.window_start_at < capital_raid_seasons.end_at
            and snapshot_windows.snapshot_at >= capital_raid_seasons.end_at
    -- weekends fetched with their member list only
    inner join raid_limits
        on capital_raid_seasons.raid_season_id = raid_limits.raid_season_id

),

raid_opportunities as (

    select
        roster.snapshot_id,
        roster.metric_window,
        roster.player_tag,
        window_raids.raid_season_id,
        coalesce(raiders.attacks, 0) as attacks,
        coalesce(raiders.attacks_allowed, window_raids.base_attack_limit)
            as attacks_allowed,
        coalesce(raiders.capital_resources_looted, 0) as looted,
        coalesce(raiders.finisher_count, 0) as finishers,
        coalesce(raiders.one_hit_count, 0) as one_hits

    from roster
    inner join window_raids
        on
            roster.snapshot_id = window_raids.snapshot_id
            and roster.metric_window = window_raids.metric_window
    left join capital_raid_members as raiders
        on
            window_raids.raid_season_id = raiders.raid_season_id
            and roster.player_tag = raiders.player_tag
    where
        raiders.player_tag is not null
        or exists (
            select 1
            from membership_stints
            where
                membership_stints.clan_tag = roster.clan_tag
                and membership_stints.player_tag = roster.player_tag
                and membership_stints.joined_at <= window_raids.end_at
                and coalesce(membership_stints.left_at, 'infinity')
                > window_raids.start_at
        )

),

capital_participation as materialized (

    select
        snapshot_id,
        metric_window,
        player_tag,
        count(*)::integer as raid_weekends,
        sum(attacks)::integer as capital_attacks,
        sum(attacks_allowed)::integer as capital_attacks_allowed,
        sum(looted)::bigint as capital_looted,
        sum(finishers)::integer as capital_finishers,
        sum(one_hits)::integer as capital_one_hits

    from raid_opportunities
    group by snapshot_id, metric_window, player_tag

),

inputs as (

    select
        roster.*,
        coalesce(window_war_counts.clan_war_count, 0) as clan_war_count,
        offence.ova_value,
        coalesce(offence.ova_n, 0) as ova_n,
        coalesce(offence.ova_fallbacks, 0) as ova_fallbacks,
        defence.dva_value,
        coalesce(defence.dva_n, 0) as dva_n,
        coalesce(defence.dva_fallbacks, 0) as dva_fallbacks,
        coalesce(war_participation.war_count, 0) as par_wars,
        coalesce(war_participation.war_attacks_used, 0) as par_war_attacks_used,
        coalesce(war_participation.war_attacks_allowed, 0)
            as par_war_attacks_allowed,
        coalesce(war_participation.full_streak, 0) as par_full_streak,
        coalesce(capital_participation.raid_weekends, 0) as par_raid_weekends,
        coalesce(capital_participation.capital_attacks, 0)
            as par_capital_attacks_used,
        coalesce(capital_participation.capital_attacks_allowed, 0)
            as par_capital_attacks_allowed,
        coalesce(capital_participation.capital_attacks, 0) as cap_n,
        coalesce(capital_participation.capital_looted, 0) as cap_looted,
        coalesce(capital_participation.capital_finishers, 0) as cap_finishers,
        coalesce(capital_participation.capital_one_hits, 0) as cap_one_hits

    from roster
    left join window_war_counts
        on
            roster.snapshot_id = window_war_counts.snapshot_id
            and roster.metric_window = window_war_counts.metric_window
    left join offence
        on
            roster.snapshot_id = offence.snapshot_id
            and roster.metric_window = offence.metric_window
            and roster.player_tag = offence.player_tag
    left join defence
        on
            roster.snapshot_id = defence.snapshot_id
            and roster.metric_window = defence.metric_window
            and roster.player_tag = defence.player_tag
    left join war_participation
        on
            roster.snapshot_id = war_participation.snapshot_id
            and roster.metric_window = war_participation.metric_window
            and roster.player_tag = war_participation.player_tag
    left join capital_participation
        on
            roster.snapshot_id = capital_participation.snapshot_id
            and roster.metric_window = capital_participation.metric_window
            and roster.player_tag = capital_participation.player_tag

),

ratios as (

    select
        inputs.*,
        case
            when inputs.par_war_attacks_allowed > 0
                then {{ metrics_clamp(
                    'inputs.par_war_attacks_used::float8'
                    ~ ' / inputs.par_war_attacks_allowed',
                    0, 1.5
                ) }}
        end as par_war_ratio,
        case
            when inputs.par_capital_attacks_allowed > 0
                then {{ metrics_clamp(
                    'inputs.par_capital_attacks_used::float8'
                    ~ ' / inputs.par_capital_attacks_allowed',
                    0, 1.5
                ) }}
        end as par_capital_ratio,
        case
            when inputs.par_wars > 0
                then {{ metrics_clamp(
                    'inputs.par_full_streak::float8 / inputs.par_wars',
                    0, 1.5
                ) }}
        end as par_streak_share,
        inputs.par_wars + inputs.par_raid_weekends as par_n,
        case
            when inputs.cap_n > 0
                then inputs.cap_looted::float8 / inputs.cap_n
        end as cap_loot_per_attack,
        case
            when inputs.cap_n > 0
                then inputs.cap_finishers::float8 / inputs.cap_n
        end as cap_finisher_rate,
        case
            when inputs.cap_n > 0
                then inputs.cap_one_hits::float8 / inputs.cap_n
        end as cap_one_hit_rate,
        case
            when inputs.don_n > 0
                then (inputs.don_given - inputs.don_received)::float8
        end as don_balance,
        case
            when inputs.don_n > 0
                then
                    inputs.don_given::float8
                    / greatest(1, inputs.don_received)
        end as don_ratio

    from inputs

),

ratio_caps as materialized (

    select
        snapshot_id,
        metric_window,
        percentile_cont(0.99) within group (order by don_ratio)
            as don_ratio_p99

    from ratios
    where don_ratio is not null
    group by snapshot_id, metric_window

),

values_ready as (

    select
        ratios.*,
        case
            when ratios.par_n > 0
                then
                    0.55 * coalesce(ratios.par_war_ratio, 0)
                    + 0.30 * coalesce(ratios.par_capital_ratio, 0)
                    + 0.15 * coalesce(ratios.par_streak_share, 0)
        end as par_value,
        ratio_caps.don_ratio_p99,
        -- least() ignores NULL: no ratio stays no ratio
        case
            when ratios.don_ratio is not null
                then least(ratios.don_ratio, ratio_caps.don_ratio_p99)
        end as don_ratio_capped

    from ratios
    left join ratio_caps
        on
            ratios.snapshot_id = ratio_caps.snapshot_id
            and ratios.metric_window = ratio_caps.metric_window

),

-- robust statistics per snapshot, window and input, over the members with
-- a value
long_values as (

    select
        values_ready.snapshot_id,
        values_ready.metric_window,
        input_values.input_name,
        input_values.input_value

    from values_ready
    cross join
        lateral (
            values
            ('ova_value', values_ready.ova_value),
            ('dva_value', values_ready.dva_value),
            ('par_value', values_ready.par_value),
            ('cap_loot_per_attack', values_ready.cap_loot_per_attack),
            ('cap_finisher_rate', values_ready.cap_finisher_rate),
            ('cap_one_hit_rate', values_ready.cap_one_hit_rate),
            ('don_balance', values_ready.don_balance),
            ('don_ratio_capped', values_ready.don_ratio_capped)
        ) as input_values (input_name, input_value)
    where input_values.input_value is not null

),

medians as materialized (

    select
        snapshot_id,
        metric_window,
        input_name,
        percentile_cont(0.5) within group (order by input_value) as median

    from long_values
    group by snapshot_id, metric_window, input_name

),

mads as (

    select
        long_values.snapshot_id,
        long_values.metric_window,
        long_values.input_name,
        medians.median,
        percentile_cont(0.5) within group (
            order by abs(long_values.input_value - medians.median)
        ) as mad

    from long_values
    inner join medians
        on
            long_values.snapshot_id = medians.snapshot_id
            and long_values.metric_window = medians.metric_window
            and long_values.input_name = medians.input_name
    group by
        long_values.snapshot_id,
        long_values.metric_window,
        long_values.input_name,
        medians.median

),

robust_stats as materialized (

    select
        snapshot_id,
        metric_window,
        max(median) filter (where input_name = 'ova_value')
            as ova_value_median,
        max(mad) filter (where input_name = 'ova_value')
            as ova_value_mad,
        max(median) filter (where input_name = 'dva_value')
            as dva_value_median,
        max(mad) filter (where input_name = 'dva_value')
            as dva_value_mad,
        max(median) filter (where input_name = 'par_value')
            as par_value_median,
        max(mad) filter (where input_name = 'par_value')
            as par_value_mad,
        max(median) filter (where input_name = 'cap_loot_per_attack')
            as cap_loot_per_attack_median,
        max(mad) filter (where input_name = 'cap_loot_per_attack')
            as cap_loot_per_attack_mad,
        max(median) filter (where input_name = 'cap_finisher_rate')
            as cap_finisher_rate_median,
        max(mad) filter (where input_name = 'cap_finisher_rate')
            as cap_finisher_rate_mad,
        max(median) filter (where input_name = 'cap_one_hit_rate')
            as cap_one_hit_rate_median,
        max(mad) filter (where input_name = 'cap_one_hit_rate')
            as cap_one_hit_rate_mad,
        max(median) filter (where input_name = 'don_balance')
            as don_balance_median,
        max(mad) filter (where input_name = 'don_balance')
            as don_balance_mad,
        max(median) filter (where input_name = 'don_ratio_capped')
            as don_ratio_capped_median,
        max(mad) filter (where input_name = 'don_ratio_capped')
            as don_ratio_capped_mad

    from mads
    group by snapshot_id, metric_window

),

z_scores as (

    select
        values_ready.*,
        {%- for column in z_inputs %}
            robust_stats.{{ column }}_median,
            robust_stats.{{ column }}_mad,
            {{ metrics_robust_z(
                'values_ready.' ~ column,
                'robust_stats.' ~ column ~ '_median',
                'robust_stats.' ~ column ~ '_mad'
            ) }} as {{ column }}_z,
        {%- endfor %}
        {{ metrics_shrink('values_ready.ova_n', 6) }} as ova_shrink,
        {{ metrics_shrink('values_ready.dva_n', 4) }} as dva_shrink,
        {{ metrics_shrink('values_ready.par_n', 0) }} as par_shrink,
        {{ metrics_shrink('values_ready.cap_n', 8) }} as cap_shrink,
        {{ metrics_shrink('values_ready.don_n', 0) }} as don_shrink

    from values_ready
    left join robust_stats
        on
            values_ready.snapshot_id = robust_stats.snapshot_id
            and values_ready.metric_window = robust_stats.metric_window

),

components as (

    select
        z_scores.*,
        z_scores.ova_value_z * z_scores.ova_shrink as ova,
        z_scores.dva_value_z * z_scores.dva_shrink as dva,
        z_scores.par_value_z * z_scores.par_shrink as par,
        (
            0.6 * z_scores.cap_loot_per_attack_z
            + 0.2 * z_scores.cap_finisher_rate_z
            + 0.2 * z_scores.cap_one_hit_rate_z
        ) * z_scores.cap_shrink as cap,
        {{ metrics_clamp(
            'z_scores.don_balance_z + 0.5 * z_scores.don_ratio_capped_z',
            -2.5, 2.5
        ) }} * z_scores.don_shrink as don,
        {{ metrics_clamp(
            '0.85 + 0.15 * least(1, z_scores.avail_active_days / 26.0)',
            0.70, 1.05
        ) }} as avail

    from z_scores

),

scored as (

    select
        components.*,
        {%- for component in metrics_ace_components().split(',') %}
            {%- set name, weight, _ = component.split(':') %}
            {{ weight }} * components.{{ name }}
            {{- " +" if not loop.last }}
        {%- endfor %} as core

    from components

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers: the score and its components
        {{ metrics_round('100 * ' ~ metrics_sigma('core') ~ ' * avail') }}
            as ace,
        {{ metrics_round('core') }} as core,
        {{ metrics_round(metrics_sigma('core')) }} as sigma,
        {%- for component in metrics_ace_components().split(',') %}
            {%- set name = component.split(':')[0] %}
            {{ metrics_round(name) }} as {{ name }},
            {{ metrics_round(name ~ '_shrink') }} as {{ name }}_shrink,
        {%- endfor %}
        {{ metrics_round('avail') }} as avail,

        -- numbers: inputs and their robust statistics
        clan_war_count,
        ova_n,
        ova_fallbacks,
        dva_n,
        dva_fallbacks,
        par_n,
        par_wars,
        par_war_attacks_used,
        par_war_attacks_allowed,
        par_full_streak,
        par_raid_weekends,
        par_capital_attacks_used,
        par_capital_attacks_allowed,
        {{ metrics_round('par_war_ratio') }} as par_war_ratio,
        {{ metrics_round('par_capital_ratio') }} as par_capital_ratio,
        {{ metrics_round('par_streak_share') }} as par_streak_share,
        cap_n,
        cap_looted,
        cap_finishers,
        cap_one_hits,
        don_n,
        don_given,
        don_received,
        {{ metrics_round('don_ratio') }} as don_ratio,
        {{ metrics_round('don_ratio_p99') }} as don_ratio_p99,
        avail_active_days,
        {%- for column in z_inputs %}
            {{ metrics_round(column) }} as {{ column }},
            {{ metrics_round(column ~ '_median') }} as {{ column }}_median,
            {{ metrics_round(column ~ '_mad') }} as {{ column }}_mad,
            {{ metrics_round(column ~ '_z') }} as {{ column }}_z,
        {%- endfor %}

        -- timestamps
        window_start_at,
        snapshot_at

    from scored

)

select * from final
