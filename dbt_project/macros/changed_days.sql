{#
    The one incremental pattern of this project: a model keyed by (user, UTC day) recomputes, on
    each run, every day that loads newer than its watermark touched, and the days within one reach
    (export_match_reach) of a new play, because a new play may absorb, or be absorbed by, a play of
    the neighbouring day. `plays` and the listening marts read the same changed days for the same
    watermark, so a day that lost all its plays is recomputed (emptied) everywhere.

    Fetched before the model's query is planned, so the filters built from them are literals that
    the planner matches to the (user_id, time) indexes of the tables read.
#}


{#
    The changed (user, UTC day)s as rows (user_id, played_date as 'YYYY-MM-DD'); none on a full build.

    Args:
        watermark_column: the column of `{{ this }}` whose maximum is the newest load already read.
#}
{% macro changed_days(watermark_column='last_load_id') -%}
    {#- ref() before anything returns: dbt records a model's dependencies while parsing, when
        nothing below runs -#}
    {%- set api_plays = ref('stg_spotify__plays') -%}
    {%- set export_plays = ref('int_export_plays_deduplicated') -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set watermark = load_watermark(watermark_column) -%}
    {%- set changed_days_query -%}
        select distinct new_plays.user_id, {{ utc_date('edges.edge') }}::text as played_date
        from (
            select user_id, played_at from {{ api_plays }}
            where load_id > {{ watermark }}
            union all
            select user_id, played_at from {{ export_plays }}
            where content_type = 'track' and load_id > {{ watermark }}
        ) as new_plays
        cross join lateral (
            values (new_plays.played_at - {{ export_match_reach() }}), (new_plays.played_at + {{ export_match_reach() }})
        ) as edges (edge)
        order by 1, 2
    {%- endset -%}
    {{ return(run_query(changed_days_query).rows) }}
{%- endmacro %}


{#
    The changed days as a relation (user_id text, played_date date), for joins and `in` filters.
#}
{% macro changed_days_relation(days) -%}
    (
        select
            user_id,
            played_date::date as played_date
        from (
            values
            {%- for day in days %}
                ('{{ day[0] | replace("'", "''") }}', '{{ day[1] }}'){{ "," if not loop.last }}
            {%- else %}
                (null::text, null::text)
            {%- endfor %}
        ) as changed (user_id, played_date)
        where user_id is not null
    )
{%- endmacro %}


{#
    Whether `time_column` of a row lies in a changed day, widened by `reach` on both sides: a
    predicate of literals, one range per day, that an index on (user_id, time) answers.
#}
{% macro in_changed_days(days, time_column, reach="interval '0 seconds'") -%}
    {%- if not days -%}
        false
    {%- elif days | length > 500 -%}
        -- many days changed (an import): reading everything is cheaper than probing each day
        true
    {%- else -%}
        (
        {%- for day in days %}
            {{ "or " if not loop.first }}(user_id = '{{ day[0] | replace("'", "''") }}'
                and {{ time_column }} >= timestamptz '{{ day[1] }} 00:00:00+00' - {{ reach }}
                and {{ time_column }} < timestamptz '{{ day[1] }} 00:00:00+00' + interval '1 day' + {{ reach }})
        {%- endfor %}
        )
    {%- endif -%}
{%- endmacro %}


{#
    A pre-hook that deletes the changed days from `{{ this }}` before the model inserts them again:
    the delete+insert strategy alone deletes only the days the new rows fall on, so a day whose
    only play was absorbed by a play just past midnight would keep it, counted twice.

    Args:
        utc_date: the SQL of a row's UTC day in `{{ this }}` (a column, or an expression that an
            index covers).
#}
{% macro delete_changed_days(utc_date='played_date', watermark_column='last_load_id') -%}
    {%- set days = changed_days(watermark_column) -%}
    {%- if days -%}
        delete from {{ this }}
        where (user_id, {{ utc_date }}) in (select user_id, played_date from {{ changed_days_relation(days) }} as changed)
    {%- endif -%}
{%- endmacro %}
