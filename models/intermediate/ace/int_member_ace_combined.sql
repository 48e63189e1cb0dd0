{#-
    ACE ("All-Mode Clan Excellence", DOMAIN.md "Derived metrics") of every
    member of a clan snapshot, for the windows 30d (as_of - 30 days, as_of]
    and season (season start, as_of], with every input kept:

      ACE  = 100 * sigma(core) * AVAIL
      sigma(x) = 1 / (1 + e^(-1.1 * clamp(x, -6, 6)))
      core = 0.40 OVA + 0.15 DVA + 0.20 PAR + 0.15 CAP + 0.10 DON

    Each component is a model of its own, which a reader can check alone:

    - int_member_ace_windows_listed: the members and windows, donations;
    - int_member_ace_ova_scored (offence), int_member_ace_dva_scored
      (defence): war attacks against their star baselines;
    - int_member_ace_par_scored: war and capital participation
      (capital weekends from int_member_ace_raids_counted);
    - int_member_ace_cap_scored: capital loot, finishers, one-hits;
    - int_member_ace_don_scored: donations given and received;
    - int_member_ace_avail_scored: AVAIL, from active days.

    Each component is a robust z-score across the members of the snapshot,
    z = (v - median) / (1.4826 MAD), 0 when MAD = 0 or v is missing (a
    member without a sample), shrunk by n / (n + k) (k = 6 attacks for OVA,
    4 defences for DVA, 8 capital attacks for CAP, 0 for PAR and DON).
    core weighs the components' exact (unrounded) values, in the order and
    with the weights of metrics_ace_components(); the columns keep them
    rounded as stored (metrics_round).

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    only the clan's snapshots newer than the latest stored one; the
    members and the components are read for those snapshots by id.
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

ova as (

    select * from {{ ref('int_member_ace_ova_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

dva as (

    select * from {{ ref('int_member_ace_dva_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

par as (

    select * from {{ ref('int_member_ace_par_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

cap as (

    select * from {{ ref('int_member_ace_cap_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

don as (

    select * from {{ ref('int_member_ace_don_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

avail as (

    select * from {{ ref('int_member_ace_avail_scored') }}
    where
        snapshot_id
        = any(array(select new_snapshots.snapshot_id from new_snapshots))

),

joined as (

    select
        -- ids
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,

        -- numbers: the components, exact and as stored
        {%- for component in metrics_ace_components().split(',') %}
            {%- set name, weight, _ = component.split(':') %}
            {{ weight }} * {{ name }}.{{ name }}_exact
            {{- " +" if not loop.last }}
        {%- endfor %} as core,
        avail.avail_exact,
        ova.ova,
        ova.ova_shrink,
        dva.dva,
        dva.dva_shrink,
        par.par,
        par.par_shrink,
        cap.cap,
        cap.cap_shrink,
        don.don,
        don.don_shrink,
        avail.avail,

        -- numbers: inputs and their robust statistics
        ova.clan_war_count,
        ova.ova_n,
        ova.ova_fallbacks,
        dva.dva_n,
        dva.dva_fallbacks,
        par.par_n,
        par.par_wars,
        par.par_war_attacks_used,
        par.par_war_attacks_allowed,
        par.par_full_streak,
        par.par_raid_weekends,
        par.par_capital_attacks_used,
        par.par_capital_attacks_allowed,
        par.par_war_ratio,
        par.par_capital_ratio,
        par.par_streak_share,
        cap.cap_n,
        cap.cap_looted,
        cap.cap_finishers,
        cap.cap_one_hits,
        don.don_n,
        don.don_given,
        don.don_received,
        don.don_ratio,
        don.don_ratio_p99,
        avail.avail_active_days,
        ova.ova_value,
        ova.ova_value_median,
        ova.ova_value_mad,
        ova.ova_value_z,
        dva.dva_value,
        dva.dva_value_median,
        dva.dva_value_mad,
        dva.dva_value_z,
        par.par_value,
        par.par_value_median,
        par.par_value_mad,
        par.par_value_z,
        cap.cap_loot_per_attack,
        cap.cap_loot_per_attack_median,
        cap.cap_loot_per_attack_mad,
        cap.cap_loot_per_attack_z,
        cap.cap_finisher_rate,
        cap.cap_finisher_rate_median,
        cap.cap_finisher_rate_mad,
        cap.cap_finisher_rate_z,
        cap.cap_one_hit_rate,
        cap.cap_one_hit_rate_median,
        cap.cap_one_hit_rate_mad,
        cap.cap_one_hit_rate_z,
        don.don_balance,
        don.don_balance_median,
        don.don_balance_mad,
        don.don_balance_z,
        don.don_ratio_capped,
        don.don_ratio_capped_median,
        don.don_ratio_capped_mad,
        don.don_ratio_capped_z,

        -- timestamps
        rosters.window_start_at,
        rosters.snapshot_at

    from rosters
    inner join ova
        on
            rosters.snapshot_id = ova.snapshot_id
            and rosters.metric_window = ova.metric_window
            and rosters.player_tag = ova.player_tag
    inner join dva
        on
            rosters.snapshot_id = dva.snapshot_id
            and rosters.metric_window = dva.metric_window
            and rosters.player_tag = dva.player_tag
    inner join par
        on
            rosters.snapshot_id = par.snapshot_id
            and rosters.metric_window = par.metric_window
            and rosters.player_tag = par.player_tag
    inner join cap
        on
            rosters.snapshot_id = cap.snapshot_id
            and rosters.metric_window = cap.metric_window
            and rosters.player_tag = cap.player_tag
    inner join don
        on
            rosters.snapshot_id = don.snapshot_id
            and rosters.metric_window = don.metric_window
            and rosters.player_tag = don.player_tag
    inner join avail
        on
            rosters.snapshot_id = avail.snapshot_id
            and rosters.metric_window = avail.metric_window
            and rosters.player_tag = avail.player_tag

),

final as (

    select
        -- ids
        snapshot_id,
        clan_tag,
        player_tag,
        metric_window,

        -- numbers: the score and its components
        {{ metrics_round('100 * ' ~ metrics_sigma('core') ~ ' * avail_exact') }}
            as ace,
        {{ metrics_round('core') }} as core,
        {{ metrics_round(metrics_sigma('core')) }} as sigma,
        ova,
        ova_shrink,
        dva,
        dva_shrink,
        par,
        par_shrink,
        cap,
        cap_shrink,
        don,
        don_shrink,
        avail,

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
        par_war_ratio,
        par_capital_ratio,
        par_streak_share,
        cap_n,
        cap_looted,
        cap_finishers,
        cap_one_hits,
        don_n,
        don_given,
        don_received,
        don_ratio,
        don_ratio_p99,
        avail_active_days,
        ova_value,
        ova_value_median,
        ova_value_mad,
        ova_value_z,
        dva_value,
        dva_value_median,
        dva_value_mad,
        dva_value_z,
        par_value,
        par_value_median,
        par_value_mad,
        par_value_z,
        cap_loot_per_attack,
        cap_loot_per_attack_median,
        cap_loot_per_attack_mad,
        cap_loot_per_attack_z,
        cap_finisher_rate,
        cap_finisher_rate_median,
        cap_finisher_rate_mad,
        cap_finisher_rate_z,
        cap_one_hit_rate,
        cap_one_hit_rate_median,
        cap_one_hit_rate_mad,
        cap_one_hit_rate_z,
        don_balance,
        don_balance_median,
        don_balance_mad,
        don_balance_z,
        don_ratio_capped,
        don_ratio_capped_median,
        don_ratio_capped_mad,
        don_ratio_capped_z,

        -- timestamps
        window_start_at,
        snapshot_at

    from joined

)

select * from final
