{#-
    Custom schemas are used as-is: `+schema: staging` builds into `staging`,
    not `<target schema>_staging`. The layers (staging, intermediate, marts,
    reference) are stable names analysts and grants refer to. Nodes without a
    custom schema go to the target's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
