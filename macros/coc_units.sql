{#-
    Names of the units that the API sends inside `troops[]` but that an analyst
    does not count as troops. The API has no type field, so the class of a unit
    comes from its name. Lists from coc.py 4.0.0 (`coc/constants.py`, MIT),
    generated from the game's static data; add new units here when the game
    adds them (an unknown pet or siege machine shows up as a troop).

    Used by stg_coc__player_units:
      pets            -> unit_type 'pet' (upgraded in the Pet House)
      siege machines  -> unit_type 'siege_machine' (built in the Workshop)
      super troops    -> is_super_troop (boosted versions of a base troop; their
                         level mirrors the base troop, never upgraded)
      event units     -> is_event_unit (seasonal troops and spells: no lab
                         upgrades, excluded from rush metrics)
-#}

{% macro coc_pet_names() -%}
    {{ return([
        'L.A.S.S.I', 'Mighty Yak', 'Electro Owl', 'Unicorn', 'Phoenix',
        'Poison Lizard', 'Diggy', 'Frosty', 'Spirit Fox', 'Angry Jelly',
        'Sneezy',
    ]) }}
{%- endmacro %}

{% macro coc_siege_machine_names() -%}
    {{ return([
        'Wall Wrecker', 'Battle Blimp', 'Stone Slammer', 'Siege Barracks',
        'Log Launcher', 'Flame Flinger', 'Battle Drill', 'Troop Launcher',
    ]) }}
{%- endmacro %}

{% macro coc_super_troop_names() -%}
    {{ return([
        'Super Barbarian', 'Super Archer', 'Super Wall Breaker', 'Super Giant',
        'Sneaky Goblin', 'Super Miner', 'Rocket Balloon', 'Inferno Dragon',
        'Super Valkyrie', 'Super Witch', 'Ice Hound', 'Super Bowler',
        'Super Dragon', 'Super Wizard', 'Super Minion', 'Super Hog Rider',
        'Super Yeti',
    ]) }}
{%- endmacro %}

{#- Seasonal troops and spells. 'Meteor Golem' is left out: coc.py lists it
    both as seasonal and as a regular Elixir troop. -#}
{% macro coc_event_unit_names() -%}
    {{ return([
        'Ice Wizard', 'Battle Ram', 'Royal Ghost', 'Pumpkin Barbarian',
        'Giant Skeleton', 'Skeleton Barrel', 'M.E.C.H.A', 'Party Wizard',
        'Ram Rider', 'Barcher', 'Witch Golem', 'Hog Wizard', 'Lavaloon',
        'C.O.O.K.I.E', 'Firecracker', 'Azure Dragon', 'Barbarian Kicker',
        'Giant Thrower', 'Broom Witch', 'Ice Minion', 'Debt Collector',
        'Snake Barrel', 'Giant Giant', 'K.A.N.E', 'The Disarmer', 'YEETer',
        "Santa's Surprise", 'Bag of Frostmites',
    ]) }}
{%- endmacro %}

{#- A list of strings as a SQL list literal: ('a', 'b'). -#}
{% macro coc_sql_list(values) -%}
    (
    {%- for value in values -%}
        '{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
    )
{%- endmacro %}
