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
