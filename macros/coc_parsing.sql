{#-
    Parsing helpers for Clash of Clans API JSON. Each takes a SQL expression
    (a string of SQL, e.g. "war ->> 'startTime'") and returns a SQL
    expression. All are NULL-safe: a missing or malformed value gives NULL,
    never an error, so one odd payload cannot break a staging view.
-#}

{#-
    API time -> timestamptz (UTC).
    - `20251003T070000.000Z` (the API's format; the fraction is optional);
    - ISO 8601 with a zone (`2025-10-03T07:00:00Z`, `...+02:00`), which a few
      newer endpoints send;
    - ISO 8601 without a zone, read as UTC (never as the session time zone).
    Anything else gives NULL.
-#}
{% macro coc_timestamp(expression) -%}
    {%- set api_time -%}
        ^\d{8}T\d{6}(\.\d{1,6})?[Zz]$
    {%- endset -%}
    {%- set api_parts -%}
        ^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d+)?[Zz]$
    {%- endset -%}
    {%- set iso_local -%}
        ^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?
    {%- endset -%}
    {%- set iso_zone -%}
        ([Zz]|[+-]\d{2}(:?\d{2})?)$
    {%- endset -%}
    case
        when ({{ expression }}) ~ '{{ api_time | trim }}'
            then regexp_replace(
                {{ expression }},
                '{{ api_parts | trim }}',
                '\1-\2-\3T\4:\5:\6\7Z'
            )::timestamptz
        when ({{ expression }}) ~ '{{ iso_local | trim }}{{ iso_zone | trim }}'
            then ({{ expression }})::timestamptz
        when ({{ expression }}) ~ '{{ iso_local | trim }}$'
            then ({{ expression }})::timestamp at time zone 'UTC'
    end
{%- endmacro %}

{#- A JSON array, or an empty one when the value is missing or not an array
    (so jsonb_array_elements never fails and never drops the parent row). -#}
{% macro coc_json_array(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'array' then {{ expression }}
        else '[]'::jsonb
    end
{%- endmacro %}

{#- A JSON number as integer (NULL when missing, JSON null or not a number). -#}
{% macro coc_int(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'number'
            then ({{ expression }})::numeric::integer
    end
{%- endmacro %}

{#- A JSON number as bigint (ids, season ids in Unix seconds, resources). -#}
{% macro coc_bigint(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'number'
            then ({{ expression }})::numeric::bigint
    end
{%- endmacro %}

{#- A JSON number as numeric (percentages such as destructionPercentage). -#}
{% macro coc_numeric(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'number'
            then ({{ expression }})::numeric
    end
{%- endmacro %}

{#- A JSON boolean as boolean. -#}
{% macro coc_bool(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'boolean'
            then ({{ expression }})::boolean
    end
{%- endmacro %}
