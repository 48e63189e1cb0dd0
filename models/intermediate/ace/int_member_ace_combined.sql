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
    core weighs the components' exact (unrounded) values; the columns keep
    them rounded as stored (metrics_round).

    Incremental (delete+insert on snapshot_id, player_tag, metric_window):
    only the clan's snapshots newer than the latest stored one; the
    components are read for those snapshots by id.
-#}

{%- set components = metrics_ace_components().split(',') %}

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

rosters as (

    {{ ace_batch_rosters() }}

),

{%- for component in components %}
    {%- set name = component.split(':')[0] %}

{{ name }} as (

    select * from {{ ref('int_member_ace_' ~ name ~ '_scored') }}
    where
        snapshot_id
        = any(array(select distinct rosters.snapshot_id from rosters))

),
{%- endfor %}

avail as (

    select * from {{ ref('int_member_ace_avail_scored') }}
    where
        snapshot_id
        = any(array(select distinct rosters.snapshot_id from rosters))

),

scored as (

    select
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,
        {%- for component in components %}
            {%- set name, weight, _ = component.split(':') %}
            {{ weight }} * {{ name }}.{{ name }}_exact
            {{- " +" if not loop.last }}
        {%- endfor %} as core,
        avail.avail_exact

    from rosters
    {%- for component in components + ['avail'] %}
        {%- set name = component.split(':')[0] %}
        inner join {{ name }}
            on
                rosters.snapshot_id = {{ name }}.snapshot_id
                and rosters.metric_window = {{ name }}.metric_window
                and rosters.player_tag = {{ name }}.player_tag
    {%- endfor %}

),

final as (

    select
        -- ids
        rosters.snapshot_id,
        rosters.clan_tag,
        rosters.player_tag,
        rosters.metric_window,

        -- numbers: the score and its components
        {{ metrics_round(
            '100 * ' ~ metrics_sigma('scored.core') ~ ' * scored.avail_exact'
        ) }} as ace,
        {{ metrics_round('scored.core') }} as core,
        {{ metrics_round(metrics_sigma('scored.core')) }} as sigma,
        {%- for component in components %}
            {%- set name = component.split(':')[0] %}
            {{ name }}.{{ name }},
            {{ name }}.{{ name }}_shrink,
        {%- endfor %}
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
        {%- for name, column in [
            ('ova', 'ova_value'), ('dva', 'dva_value'), ('par', 'par_value'),
            ('cap', 'cap_loot_per_attack'), ('cap', 'cap_finisher_rate'),
            ('cap', 'cap_one_hit_rate'), ('don', 'don_balance'),
            ('don', 'don_ratio_capped'),
        ] %}
            {{ name }}.{{ column }},
            {{ name }}.{{ column }}_median,
            {{ name }}.{{ column }}_mad,
            {{ name }}.{{ column }}_z,
        {%- endfor %}

        -- timestamps
        rosters.window_start_at,
        rosters.snapshot_at

    from rosters
    inner join scored
        on
            rosters.snapshot_id = scored.snapshot_id
            and rosters.metric_window = scored.metric_window
            and rosters.player_tag = scored.player_tag
    {%- for component in components + ['avail'] %}
        {%- set name = component.split(':')[0] %}
        inner join {{ name }}
            on
                rosters.snapshot_id = {{ name }}.snapshot_id
                and rosters.metric_window = {{ name }}.metric_window
                and rosters.player_tag = {{ name }}.player_tag
    {%- endfor %}

)

select * from final
