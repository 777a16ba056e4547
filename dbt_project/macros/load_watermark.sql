{#
    The newest dlt load id an incremental model has already read (`column` of `{{ this }}`), as a
    SQL literal; '' on a full build. Fetched before the model's query is compiled, so the filter
    `load_id > <literal>` lets PostgreSQL's planner see that almost no raw row qualifies and use the
    raw tables' load-id index. (A subquery would be an unknown parameter at planning time, which
    the planner prices as a third of the table: a full scan of the history on every hourly run.)
#}
{% macro load_watermark(column) -%}
    {%- if execute and is_incremental() -%}
        {%- set result = run_query("select coalesce(max(" ~ column ~ "), '') from " ~ this) -%}
        {{ "'" ~ (result.columns[0].values()[0] | replace("'", "")) ~ "'" }}
    {%- else -%}
        ''
    {%- endif -%}
{%- endmacro %}
