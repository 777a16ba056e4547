{#
    Some raw tables appear only with their first rows: the export tables with a first
    `import-history`, `raw.gaps` with a first gap, and `raw.recently_played` with the first API load
    (a listener may import the export first). A project that required them would fail on every
    fresh install. This reads the source when it exists and otherwise an empty relation of the
    columns its yml declares with a `data_type` (views are rebuilt on every run, so they pick the
    table up as soon as it appears). Lineage is kept: `source()` is always called.

    Args:
        source_name, table_name: as for `source()`.
#}
{% macro optional_source(source_name, table_name) -%}
    {%- set relation = source(source_name, table_name) -%}
    {#- in a unit test, source() is the test's fixture rows: no schema, nothing to look up -#}
    {%- if execute and relation.schema is not none
        and adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
        {{ not_yet_created(relation) }}
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}


{#
    An empty relation standing for a source table that does not exist yet, with the columns (and
    types) its yml declares. Used by optional_source, and by get_where_subquery for the source's
    own tests.
#}
{% macro not_yet_created(relation) -%}
    {%- set declared = [] -%}
    {%- for source_node in graph.sources.values()
        if source_node.schema == relation.schema and source_node.identifier == relation.identifier -%}
        {%- for column in source_node.columns.values() if column.data_type -%}
            {%- do declared.append('null::' ~ column.data_type ~ ' as ' ~ adapter.quote(column.name)) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if not declared -%}
        {{ exceptions.raise_compiler_error(relation ~ " does not exist, and its yml declares no column types to stand in for it") }}
    {%- endif -%}
    (select {{ declared | join(', ') }} where false) as not_yet_created
{%- endmacro %}
