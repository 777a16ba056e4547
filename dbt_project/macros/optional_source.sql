{#
    The export tables exist only after a first `import-history`, and `raw.gaps` only after a first gap:
    a project that requires them would fail on every fresh install. This reads the source when it
    exists and an empty relation of the same columns otherwise (views are rebuilt on every run, so
    they pick the table up as soon as it appears). Lineage is kept: `source()` is always called.

    Args:
        source_name, table_name: as for `source()`.
        columns: list of [name, type] pairs: the columns the model reads.
#}
{% macro optional_source(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if execute and adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
        (select
            {%- for column in columns %}
            null::{{ column[1] }} as {{ column[0] }}{{ "," if not loop.last }}
            {%- endfor %}
        where false) as missing_source
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}
