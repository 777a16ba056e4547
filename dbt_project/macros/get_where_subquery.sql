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

    A second placeholder scopes the tests of a view over such a table: `__changed_<column>_of_<table>__`
    stands for the distinct values of <column> in the rows of <table> (same schema) that the latest
    run wrote (its newest `last_load_id`), as a list for `in`: `('a', 'b')`, or `(null)` when none.
    Literals again: PostgreSQL moves `user_id in ('a') and played_date in (...)` into an aggregating
    view down to the index of the table below, where a subquery would make it aggregate every row.

    A source table that does not exist yet (raw.recently_played before the first API load) is
    tested as what it is, a table without rows: an empty relation of the columns its yml declares
    with a `data_type`.

    dbt reads a root-project macro of this name instead of its own (the documented way to give
    `where` custom logic, since yml configs cannot call project macros).
#}
{% macro get_where_subquery(relation) -%}
    {%- if execute and relation.schema is not none and adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
        {%- do return(not_yet_created(relation)) -%}
    {%- endif -%}
    {%- set where = config.get('where', '') -%}
    {%- set placeholders = modules.re.findall('__latest_([a-z_]+?)(?:_of_([a-z_]+))?__', where or '') -%}
    {%- set changed = modules.re.findall('__changed_([a-z_]+?)_of_([a-z_]+)__', where or '') -%}
    {%- if (placeholders or changed) and var('full_history_tests', false) -%}
        {%- set where = '' -%}
    {%- elif (placeholders or changed) and execute -%}
        {#- a namespace: a plain `set` inside a loop would not outlive the loop -#}
        {%- set filled = namespace(where=where) -%}
        {%- for column, table in placeholders | unique -%}
            {%- set source = relation.incorporate(path={'identifier': table}) if table else relation -%}
            {%- set latest = run_query('select max(' ~ column ~ ')::text from ' ~ source).columns[0].values()[0] -%}
            {%- set literal = "null" if latest is none else "'" ~ (latest | replace("'", "''")) ~ "'" -%}
            {%- set placeholder = '__latest_' ~ column ~ ('_of_' ~ table if table else '') ~ '__' -%}
            {%- set filled.where = filled.where | replace(placeholder, literal) -%}
        {%- endfor -%}
        {%- for column, table in changed | unique -%}
            {%- set source = relation.incorporate(path={'identifier': table}) -%}
            {#- the newest marker as a literal too: a parameter would be priced as the whole table -#}
            {%- set latest = run_query('select max(last_load_id)::text from ' ~ source).columns[0].values()[0] -%}
            {%- set values = run_query(
                'select distinct ' ~ column ~ '::text from ' ~ source
                ~ ' where last_load_id = ' ~ ("null" if latest is none else "'" ~ (latest | replace("'", "''")) ~ "'")
            ).columns[0].values() -%}
            {%- set literals = [] -%}
            {%- for value in values if value is not none -%}
                {%- do literals.append("'" ~ (value | replace("'", "''")) ~ "'") -%}
            {%- endfor -%}
            {%- set placeholder = '__changed_' ~ column ~ '_of_' ~ table ~ '__' -%}
            {%- set filled.where = filled.where | replace(placeholder, '(' ~ (literals | join(', ') or 'null') ~ ')') -%}
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

