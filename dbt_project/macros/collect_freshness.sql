{#
    Freshness of a source table that does not exist yet: never loaded, not a database error.

    A listener who imports the data export before any API load (the usual first step) has no
    `raw.recently_played`: dlt creates it with the first play it loads. dbt's own query would fail
    on the missing table and fail the run; a null `max_loaded_at` instead reads as "infinitely old",
    which the source's `warn_after` turns into a warning (the source has no `error_after`, see
    models/staging/spotify/_spotify__sources.yml). Existing tables go through dbt's own macro.

    dbt looks up `postgres__collect_freshness` in the root project before its own (overriding a
    global macro by dispatch). Checked against dbt-core 1.11.
#}
{% macro postgres__collect_freshness(source, loaded_at_field, filter) -%}
    {%- if adapter.get_relation(source.database, source.schema, source.identifier) is not none -%}
        {{ return(dbt.default__collect_freshness(source, loaded_at_field, filter)) }}
    {%- endif -%}
    {%- call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        select
            null::timestamptz as max_loaded_at,
            {{ current_timestamp() }} as snapshotted_at
    {%- endcall -%}
    {{ return(load_result('collect_freshness')) }}
{%- endmacro %}
