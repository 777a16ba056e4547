{#
    dbt's default prefixes custom schemas with the target schema (`analytics_staging`). The
    Airflow DAG, the docs and analysts' queries expect exactly `staging` and `analytics`, so a
    configured schema is used verbatim and only unconfigured models fall back to the target's.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
