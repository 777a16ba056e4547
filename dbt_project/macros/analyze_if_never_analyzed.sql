{#
    Post-hook of the mart tables: ANALYZE a table that has no statistics yet, i.e. right after a
    full build (incremental runs then skip it: one catalog lookup). Without statistics the planner
    prices every `last_load_id > <watermark>` filter at a third of the table and answers the next
    hourly run's small queries with whole-table joins; autovacuum would analyze it eventually, but
    only if it runs (it is off on some servers) and not before the next run. Views are skipped.
#}
{% macro analyze_if_never_analyzed() -%}
    {%- if model.config.materialized in ['table', 'incremental'] -%}
        do $$
        begin
            if not exists (
                select from pg_stats
                where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
            )
            -- row-level security forced on the owner (macros/listener_row_security.sql) hides pg_stats
            -- from it: then whether the table was ever analyzed has to do
            and not (
                row_security_active('{{ this.include(database=false) }}'::regclass)
                and exists (
                    select from pg_stat_user_tables
                    where
                        relid = '{{ this.include(database=false) }}'::regclass
                        and coalesce(last_analyze, last_autoanalyze) is not null
                )
            ) then
                analyze {{ this }};
            end if;
        end
        $$
    {%- endif -%}
{%- endmacro %}
