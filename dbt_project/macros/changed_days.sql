{#
    The (user, UTC day)s that loads newer than `plays`' watermark touched, with the days within one
    reach (export_match_reach) of a new play: the days `plays` recomputes. Fetched before the query
    is planned, so that its filters are literals the planner matches to the raw tables' (user_id,
    time) keys. Rows (user_id, played_date as text); none on a full build.
#}
{% macro plays_changed_days() -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set watermark = load_watermark('load_id') -%}
    {%- set changed_days_query -%}
        select distinct new_plays.user_id, {{ utc_date('edges.edge') }}::text as played_date
        from (
            select user_id, played_at from {{ ref('stg_spotify__plays') }}
            where load_id > {{ watermark }}
            union all
            select user_id, played_at from {{ ref('int_export_plays_deduplicated') }}
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
    `plays`' pre-hook: deletes the days the run recomputes. The delete+insert strategy alone deletes
    only the days the new rows fall on, so a day whose only play was an export play now absorbed by
    an API play just past midnight would keep it, counted twice.
#}
{% macro plays_delete_changed_days() -%}
    {%- set changed_days = plays_changed_days() -%}
    {%- if changed_days -%}
        delete from {{ this }}
        where (user_id, played_date) in (
            select user_id, played_date::date
            from (
                values
                {%- for day in changed_days %}
                    ('{{ day[0] | replace("'", "''") }}', '{{ day[1] }}'){{ "," if not loop.last }}
                {%- endfor %}
            ) as changed (user_id, played_date)
        )
    {%- endif -%}
{%- endmacro %}
