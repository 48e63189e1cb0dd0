{#-
    Keys and versions of the member marts. Each is a deterministic function
    of the data (never of now() or of the build), so a full refresh from raw
    gives the same values as the incremental history.
-#}

{#- The id of a clan snapshot: md5 of the clan tag and the landed run. -#}
{% macro members_snapshot_id(clan_tag, run_id) -%}
    md5({{ clan_tag }} || '|' || ({{ run_id }})::text)
{%- endmacro %}

{#- A timestamptz as fixed UTC text (independent of the session TimeZone),
    for hashing. -#}
{% macro members_utc_text(expression) -%}
    to_char(
        ({{ expression }}) at time zone 'UTC',
        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
    )
{%- endmacro %}

{#- payload_version: the same snapshot always gives the same value, a new
    snapshot (or a new warehouse schema) a new one. -#}
{% macro members_payload_version(clan_tag, snapshot_at) -%}
    md5(
        '{{ var("schema_version") }}'
        || '|' || {{ clan_tag }}
        || '|' || {{ members_utc_text(snapshot_at) }}
    )
{%- endmacro %}

{#- `leagueTier.id` of "Unranked": a member with this tier (or none) after
    the 2025 split still has battle-mode trophies. -#}
{% macro members_unranked_tier_id() -%}
    105000000
{%- endmacro %}

{#- The columns that describe a member in a snapshot, in mart order: what
    member_snapshot_stats and members carry besides keys, lineage and
    timestamps, and what row_hash covers (comma-separated; split it). -#}
{% macro members_descriptive_columns() -%}
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
    troops_owned,spells_owned,siege_machines_owned,pets_owned,equipment_owned
{%- endmacro %}

{#- row_hash: md5 of the member's key and descriptive columns (not the
    snapshot lineage, not timestamps) as one canonical jsonb array, so NULLs
    and types are told apart and the text does not depend on the session. -#}
{% macro members_row_hash(relation_alias) -%}
    md5(
        jsonb_build_array(
            {{ relation_alias }}.clan_tag,
            {{ relation_alias }}.player_tag
            {%- for column in members_descriptive_columns().split(',') %},
            {{ relation_alias }}.{{ column | trim }}
            {%- endfor %}
        )::text
    )
{%- endmacro %}
