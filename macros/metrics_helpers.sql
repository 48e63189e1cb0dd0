{#-
    Helpers of the derived metrics (DOMAIN.md, "Derived metrics"; the
    catalogue is seeds/metric_catalogue.csv). Each takes SQL expressions as
    strings and returns a SQL expression.
-#}

{#- The windows of the flow metrics (donations, activity), comma-separated
    (list macros return text: SQLFluff's Jinja templater has no return()).
    Use: metrics_flow_windows().split(','). -#}
{% macro metrics_flow_windows() -%}
    7d,30d,season
{%- endmacro %}

{#- The windows of ACE, comma-separated. -#}
{% macro metrics_ace_windows() -%}
    30d,season
{%- endmacro %}

{#- The ACE components in formula order, as name:weight:k (weight in core,
    k of the n / (n + k) shrinkage), comma-separated. Use:
    {% set name, weight, k = item.split(':') %}. -#}
{% macro metrics_ace_components() -%}
    ova:0.4:6,dva:0.15:4,par:0.2:0,cap:0.15:8,don:0.1:0
{%- endmacro %}

{#- x clamped to [low, high]; NULL stays NULL (greatest and least alone
    ignore a NULL argument and would return a bound). -#}
{% macro metrics_clamp(expression, low, high) -%}
    case
        when ({{ expression }}) is not null
            then greatest({{ low }}, least({{ high }}, {{ expression }}))
    end
{%- endmacro %}

{#- Robust z-score: (v - median) / (1.4826 * MAD); 0 when v is missing or
    the MAD is 0 (or unknown: nobody has a value). -#}
{% macro metrics_robust_z(value, median, mad) -%}
    case
        when {{ value }} is null or coalesce({{ mad }}, 0) = 0 then 0::float8
        else ({{ value }} - {{ median }}) / (1.4826 * {{ mad }})
    end
{%- endmacro %}

{#- Shrinkage n / (n + k), 0 when n is 0 (so k = 0 gives 1 or 0). -#}
{% macro metrics_shrink(sample_size, k) -%}
    case
        when coalesce({{ sample_size }}, 0) <= 0 then 0::float8
        else {{ sample_size }}::float8 / ({{ sample_size }} + {{ k }})
    end
{%- endmacro %}

{#- ACE's sigma: 1 / (1 + e^(-1.1 * clamp(x, -6, 6))). -#}
{% macro metrics_sigma(expression) -%}
    1 / (1 + exp(-1.1 * {{ metrics_clamp(expression, -6, 6) }}))
{%- endmacro %}

{#- A stored metric value: numeric rounded to 6 decimals, trailing zeros
    dropped (50, not 50.000000). -#}
{% macro metrics_round(expression) -%}
    trim_scale(round(({{ expression }})::numeric, 6))
{%- endmacro %}

{#- Days between two timestamptz expressions, as a fraction. -#}
{% macro metrics_days_between(later, earlier) -%}
    (extract(epoch from ({{ later }}) - ({{ earlier }})) / 86400.0)
{%- endmacro %}

{#-
    The season end that falls in a month: the last `isodow` of the month at
    `time_utc` (game_calendar.season_end_isodow / season_end_time_utc: the
    last Monday at 05:00 UTC). `month_start` is a timestamp WITHOUT time
    zone holding the first day of the month as UTC wall-clock time; the
    result is a timestamptz, independent of the session TimeZone.
-#}
{% macro metrics_season_end_in_month(month_start, isodow, time_utc) -%}
    (
        (
            (({{ month_start }}) + interval '1 month' - interval '1 day')::date
            - (
                (
                    extract(
                        isodow from (
                            ({{ month_start }})
                            + interval '1 month' - interval '1 day'
                        )
                    )::integer
                    - ({{ isodow }})
                    + 7
                ) % 7
            )
        ) + ({{ time_utc }})
    ) at time zone 'UTC'
{%- endmacro %}

{#-
    Start of the season (donation counters reset) that contains `ts`: this
    month's season end when `ts` is at or after it, else last month's.
    `calendar` is the alias of the game_calendar seed in the query.
-#}
{% macro metrics_season_start(ts, calendar='game_calendar') -%}
    {%- set month_start -%}
        date_trunc('month', ({{ ts }}) at time zone 'UTC')
    {%- endset -%}
    {%- set previous_month_start -%}
        (
            date_trunc('month', ({{ ts }}) at time zone 'UTC')
            - interval '1 month'
        )
    {%- endset -%}
    case
        when
            ({{ ts }}) >= {{ metrics_season_end_in_month(
                month_start,
                calendar ~ '.season_end_isodow',
                calendar ~ '.season_end_time_utc'
            ) }}
            then {{ metrics_season_end_in_month(
                month_start,
                calendar ~ '.season_end_isodow',
                calendar ~ '.season_end_time_utc'
            ) }}
        else {{ metrics_season_end_in_month(
            previous_month_start,
            calendar ~ '.season_end_isodow',
            calendar ~ '.season_end_time_utc'
        ) }}
    end
{%- endmacro %}

{#- Ranked tournament week number of `ts` (weeks of 7 days from
    game_calendar.ranked_week_anchor_at; negative before it). -#}
{% macro metrics_ranked_week(ts, calendar='game_calendar') -%}
    floor(
        extract(epoch from ({{ ts }}) - {{ calendar }}.ranked_week_anchor_at)
        / 604800
    )::integer
{%- endmacro %}

{#- The metrics the roster mart carries as columns, as
    metric_name:metric_window:column, comma-separated. State metrics
    (window `latest`) keep their name; windowed ones get the window as a
    suffix. -#}
{% macro metrics_roster_columns() -%}
    hero_rush_pct:latest:hero_rush_pct,lab_rush_pct:latest:lab_rush_pct
    {%- for metric in [
        'donations_given', 'donations_received', 'donation_balance',
        'donation_ratio', 'active_days',
    ] -%}
        {%- for window in metrics_flow_windows().split(',') -%}
            ,{{ metric }}:{{ window }}:{{ metric }}_{{ window }}
        {%- endfor -%}
    {%- endfor -%}
    ,days_since_last_seen:latest:days_since_last_seen
    {#- -#},tenure_days:latest:tenure_days
    {#- -#},total_tenure_days:latest:total_tenure_days
    {%- for metric in [
        'ace', 'ace_ova', 'ace_dva', 'ace_par', 'ace_cap', 'ace_don',
        'ace_avail',
    ] -%}
        {%- for window in metrics_ace_windows().split(',') -%}
            ,{{ metric }}:{{ window }}:{{ metric }}_{{ window }}
        {%- endfor -%}
    {%- endfor -%}
{%- endmacro %}

{#- The columns of `members` the roster mart repeats (besides the keys and
    the membership columns), in members' order, comma-separated. Listed
    here rather than taken from members.* so that a new members column does
    not change the roster's contract unnoticed. -#}
{% macro metrics_roster_member_columns() -%}
    name,role,has_profile,
    legacy_league_id,legacy_league_name,league_tier_id,league_tier_name,
    league_id,league_name,builder_base_league_id,builder_base_league_name,
    league_season_id,league_group_tag,
    equipment_flags,modifier_flags,pet_levels,
    town_hall_level,exp_level,trophies,best_trophies,
    battle_mode_trophies,ranked_trophies,builder_base_trophies,
    donations,donations_received,war_stars,capital_contributions,
    barbarian_king_level,archer_queen_level,grand_warden_level,
    royal_champion_level,minion_prince_level,
    troops_owned,spells_owned,siege_machines_owned,pets_owned,
    equipment_owned,row_hash
{%- endmacro %}

{#- Shared steps of the ACE models (models/intermediate/ace), here beside
    the helpers they call (SQLFluff's Jinja templater loads each macro file
    on its own). Each returns a SELECT to use as a CTE's body; the models
    hold the formulas. -#}

{#-
    The clan's regular and CWL wars that ended in each window of the batch
    `rosters` (a CTE of int_member_ace_windows_listed rows), 0 wars ago = the
    latest. Point in time: a war counts at a snapshot only once a run at or
    before it saw the war ended (int_war_finals_observed), so a snapshot
    never reads a war fetched after it. Wars are read for the batch's span only, through the war mart's
    clan/time index.
-#}
{% macro ace_window_wars(rosters) -%}
    with

    snapshot_windows as (

        select distinct
            snapshot_id,
            clan_tag,
            metric_window,
            window_start_at,
            snapshot_at

        from {{ rosters }}

    ),

    read_bounds as (

        select
            clan_tag,
            min(window_start_at) as read_from_at,
            max(snapshot_at) as read_to_at

        from snapshot_windows
        group by clan_tag

    ),

    wars as (

        select
            batch_wars.*,
            war_finals.final_seen_at
        from {{ ref('wars') }} as batch_wars
        inner join read_bounds
            on
                batch_wars.clan_tag = read_bounds.clan_tag
                and batch_wars.end_at > read_bounds.read_from_at
                and batch_wars.end_at <= read_bounds.read_to_at
        inner join {{ ref('int_war_finals_observed') }} as war_finals
            on batch_wars.war_id = war_finals.war_id
        where
            batch_wars.war_type in ('regular', 'cwl')
            and war_finals.final_seen_at <= read_bounds.read_to_at

    )

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
            -- point in time: only wars seen ended by the snapshot, whose
            -- data (the wars marts' latest fetch) is final
            and snapshot_windows.snapshot_at >= wars.final_seen_at
{%- endmacro %}

{#-
    Every attack of the `window_wars` (ace_window_wars), both directions,
    with its decay 0.75^(wars ago) and the expected new stars and SD of its
    bucket at as_of (int_star_baselines_accumulated; the global bucket when
    the bucket has no data). OVA scores our attacks, DVA the attacks on us.
-#}
{% macro ace_scored_attacks(window_wars) -%}
    with

    war_attacks as (

        select * from {{ ref('war_attacks') }}
        where
            war_id = any(
                array(select distinct {{ window_wars }}.war_id
                    from {{ window_wars }})
            )

    ),

    star_baselines as (

        select * from {{ ref('int_star_baselines_accumulated') }}

    )

    select
        {{ window_wars }}.snapshot_id,
        {{ window_wars }}.metric_window,
        {{ window_wars }}.wars_ago,
        war_attacks.is_our_clan_attack,
        war_attacks.attacker_tag,
        war_attacks.defender_tag,
        war_attacks.new_stars,
        power(0.75, {{ window_wars }}.wars_ago) as decay,
        coalesce(bucket.mean_new_stars, global.mean_new_stars)
            as expected_new_stars,
        coalesce(bucket.sd_floored, global.sd_floored) as sd_new_stars,
        bucket.bucket_key is null as is_global_fallback

    from {{ window_wars }}
    inner join war_attacks
        on {{ window_wars }}.war_id = war_attacks.war_id
    left join star_baselines as bucket
        on
            not bucket.is_global
            and bucket.town_hall_difference = {{ metrics_clamp(
                'war_attacks.town_hall_difference', -3, 3
            ) }}
            and war_attacks.previous_best_stars = bucket.previous_best_stars
            and {{ window_wars }}.snapshot_at >= bucket.valid_from_at
            and (
                bucket.valid_to_at is null
                or {{ window_wars }}.snapshot_at < bucket.valid_to_at
            )
    left join star_baselines as global
        on
            global.is_global
            and {{ window_wars }}.snapshot_at >= global.valid_from_at
            and (
                global.valid_to_at is null
                or {{ window_wars }}.snapshot_at < global.valid_to_at
            )
{%- endmacro %}

{#-
    Robust statistics of `column` of the CTE `values` per snapshot and
    window, over the members with a value: the median and the median
    absolute deviation (MAD) from it, as `<column>_median`, `<column>_mad`.
    Values are compared as float8, as one input list of all components was.
-#}
{% macro ace_robust_stats(values, column) -%}
    with

    long_values as (

        select
            snapshot_id,
            metric_window,
            {{ column }}::float8 as input_value

        from {{ values }}
        where {{ column }} is not null

    ),

    medians as materialized (

        select
            snapshot_id,
            metric_window,
            percentile_cont(0.5) within group (order by input_value) as median

        from long_values
        group by snapshot_id, metric_window

    )

    select
        long_values.snapshot_id,
        long_values.metric_window,
        medians.median as {{ column }}_median,
        percentile_cont(0.5) within group (
            order by abs(long_values.input_value - medians.median)
        ) as {{ column }}_mad

    from long_values
    inner join medians
        on
            long_values.snapshot_id = medians.snapshot_id
            and long_values.metric_window = medians.metric_window
    group by long_values.snapshot_id, long_values.metric_window, medians.median
{%- endmacro %}
