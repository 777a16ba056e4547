{#
    dbt's `where` test config, plus one placeholder: `__latest_<column>__` stands for the newest
    value of <column> in the tested relation (`__latest_<column>_of_<table>__`: in that table of the
    same schema, for a view over it, where the index cannot answer max()), fetched as a literal before
    the test is compiled, so the planner can use the column's index (as in load_watermark).

    Why: the incremental marts stamp every row a run writes with that run's marker (`last_load_id`),
    so `where: "last_load_id = __latest_last_load_id__"` tests exactly the rows the latest run
    wrote, and an hourly build no longer scans the whole history for every not_null, accepted_values
    or relationships test. The meaning is kept: the other rows were tested when they were written
    and no run changes them since; the parents of relationships tests (tracks, artists, albums)
    never lose a row; and uniqueness holds by unique indexes on the tables themselves (a duplicate
    fails the build) and, for keys that one run rewrites as a whole (a UTC day, a listener's later
    sessions), by the scoped test too.

    A run whose tests were skipped leaves its rows untested by later hourly runs: check everything
    with `dbt build --vars '{full_history_tests: true}'` (or `dbt test --vars ...`), e.g. weekly or
    after an import. That var drops the placeholder filters; other `where` filters are kept.

    dbt reads a root-project macro of this name instead of its own (the documented way to give
    `where` custom logic, since yml configs cannot call project macros).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set placeholders = modules.re.findall('__latest_([a-z_]+?)(?:_of_([a-z_]+))?__', where or '') -%}
    {%- if placeholders and var('full_history_tests', false) -%}
        {%- set where = '' -%}
    {%- elif placeholders and execute -%}
        {#- a namespace: a plain `set` inside a loop would not outlive the loop -#}
        {%- set filled = namespace(where=where) -%}
        {%- for column, table in placeholders | unique -%}
            {%- set source = relation.incorporate(path={'identifier': table}) if table else relation -%}
            {%- set latest = run_query('select max(' ~ column ~ ')::text from ' ~ source).columns[0].values()[0] -%}
            {%- set literal = "null" if latest is none else "'" ~ (latest | replace("'", "''")) ~ "'" -%}
            {%- set placeholder = '__latest_' ~ column ~ ('_of_' ~ table if table else '') ~ '__' -%}
            {%- set filled.where = filled.where | replace(placeholder, literal) -%}
        {%- endfor -%}
        {%- set where = filled.where -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
