{#-
    CAP, the capital component of ACE (DOMAIN.md "Derived metrics"), per
    member of a clan snapshot and window, over the capital raid weekends
    of int_member_ace_raids_counted: 0.6 z(loot per capital attack) + 0.2
    z(finisher rate) + 0.2 z(one-hit rate), each a robust z across the
    snapshot's members, x n / (n + 8), n = capital attacks.

    Values kept rounded as ACE stores them and cap_exact unrounded (see
    int_member_ace_ova_scored). Incremental as int_member_ace_ova_scored.
-#}

{%- set z_inputs = [
    'cap_loot_per_attack', 'cap_finisher_rate', 'cap_one_hit_rate',
] %}

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

with

new_snapshots as (

    select
        roster_snapshots.snapshot_id,
        roster_snapshots.clan_tag,
        roster_snapshots.snapshot_at

    from {{ ref('roster_snapshots') }} as roster_snapshots
    {{ after_clan_watermark('roster_snapshots') }}

),

rosters as (

    select * from {{ ref('int_member_ace_windows_listed') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

raids as (

    select * from {{ ref('int_member_ace_raids_counted') }}
    where
        snapshot_id
        = any(array(select distinct rosters.snapshot_id from rosters))

),

inputs as (

    select
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,
        rosters.window_start_at,
        rosters.snapshot_at,
        coalesce(raids.capital_attacks, 0) as cap_n,
        coalesce(raids.capital_looted, 0) as cap_looted,
        coalesce(raids.capital_finishers, 0) as cap_finishers,
        coalesce(raids.capital_one_hits, 0) as cap_one_hits

    from rosters
    left join raids
        on
            rosters.snapshot_id = raids.snapshot_id
            and rosters.metric_window = raids.metric_window
            and rosters.player_tag = raids.player_tag

),

values_ready as (

    select
        inputs.*,
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
        end as cap_one_hit_rate

    from inputs

),

loot_stats as materialized (

    {{ ace_robust_stats('values_ready', 'cap_loot_per_attack') }}

),

finisher_stats as materialized (

    {{ ace_robust_stats('values_ready', 'cap_finisher_rate') }}

),

one_hit_stats as materialized (

    {{ ace_robust_stats('values_ready', 'cap_one_hit_rate') }}

),

scored as (

    select
        values_ready.*,
        loot_stats.cap_loot_per_attack_median,
        loot_stats.cap_loot_per_attack_mad,
        {{ metrics_robust_z(
            'values_ready.cap_loot_per_attack',
            'loot_stats.cap_loot_per_attack_median',
            'loot_stats.cap_loot_per_attack_mad'
        ) }} as cap_loot_per_attack_z,
        finisher_stats.cap_finisher_rate_median,
        finisher_stats.cap_finisher_rate_mad,
        {{ metrics_robust_z(
            'values_ready.cap_finisher_rate',
            'finisher_stats.cap_finisher_rate_median',
            'finisher_stats.cap_finisher_rate_mad'
        ) }} as cap_finisher_rate_z,
        one_hit_stats.cap_one_hit_rate_median,
        one_hit_stats.cap_one_hit_rate_mad,
        {{ metrics_robust_z(
            'values_ready.cap_one_hit_rate',
            'one_hit_stats.cap_one_hit_rate_median',
            'one_hit_stats.cap_one_hit_rate_mad'
        ) }} as cap_one_hit_rate_z,
        {{ metrics_shrink('values_ready.cap_n', 8) }} as cap_shrink

    from values_ready
    left join loot_stats
        on
            values_ready.snapshot_id = loot_stats.snapshot_id
            and values_ready.metric_window = loot_stats.metric_window
    left join finisher_stats
        on
            values_ready.snapshot_id = finisher_stats.snapshot_id
            and values_ready.metric_window = finisher_stats.metric_window
    left join one_hit_stats
        on
            values_ready.snapshot_id = one_hit_stats.snapshot_id
            and values_ready.metric_window = one_hit_stats.metric_window

),

components as (

    select
        scored.*,
        (
            0.6 * scored.cap_loot_per_attack_z
            + 0.2 * scored.cap_finisher_rate_z
            + 0.2 * scored.cap_one_hit_rate_z
        ) * scored.cap_shrink as cap_exact

    from scored

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers: the component, rounded and exact
        {{ metrics_round('cap_exact') }} as cap,
        {{ metrics_round('cap_shrink') }} as cap_shrink,
        cap_exact,

        -- numbers: inputs and their robust statistics
        cap_n,
        cap_looted,
        cap_finishers,
        cap_one_hits,
        {%- for column in z_inputs %}
            {{ metrics_round(column) }} as {{ column }},
            {{ metrics_round(column ~ '_median') }} as {{ column }}_median,
            {{ metrics_round(column ~ '_mad') }} as {{ column }}_mad,
            {{ metrics_round(column ~ '_z') }} as {{ column }}_z,
        {%- endfor %}

        -- timestamps
        window_start_at,
        snapshot_at

    from components

)

select * from final
