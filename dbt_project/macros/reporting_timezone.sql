{#
    The listener's wall clock: a timestamptz as a timestamp without time zone in the
    `reporting_timezone` var (listening_plays' local date, hour and weekday).
#}
{% macro reporting_local_time(column) -%}
    ({{ column }} at time zone '{{ var("reporting_timezone") | replace("'", "''") }}')
{%- endmacro %}


{#
    Stops an incremental build of listening_plays whose stored rows were computed in another
    `reporting_timezone`: appending the new days in the new zone would mix two zones. Checks the
    newest stored row (an index probe on last_load_id). A zone with the same offset at that instant
    (Europe/Paris for Europe/Berlin) is not noticed: rebuild after any change.
#}
{% macro assert_reporting_timezone_unchanged() -%}
    {%- if execute and is_incremental() -%}
        {%- set check_query -%}
            select
                played_date = {{ reporting_local_time('played_at') }}::date
                and played_hour = extract(hour from {{ reporting_local_time('played_at') }})::integer
            from {{ this }}
            order by last_load_id desc
            limit 1
        {%- endset -%}
        {%- set rows = run_query(check_query).rows -%}
        {%- if rows and not rows[0][0] -%}
            {{ exceptions.raise_compiler_error(
                "reporting_timezone is now '" ~ var("reporting_timezone") ~ "', but " ~ this
                ~ " was built in another time zone: run `dbt build --full-refresh --select listening_plays+`"
            ) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
