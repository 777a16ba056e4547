{#
    How close in time a play seen by the API and the same play in the data export must be to count
    as one play. Both record when the play ended: the API's `played_at` (milliseconds) and the
    export's `ts` (seconds) or `endTime` (minutes, truncated) differ by clock and rounding only.
    Override with `--vars '{export_match_tolerance_seconds: 30}'`.
#}
{% macro export_match_tolerance() -%}
    interval '{{ var("export_match_tolerance_seconds", 15) }} seconds'
{%- endmacro %}

{#
    How far from a play `plays` looks when it recomputes the days around it: the tolerance plus the
    minute an account-data play may span. A play and the export play it absorbs are never further
    apart than this.
#}
{% macro export_match_reach() -%}
    ({{ export_match_tolerance() }} + interval '1 minute')
{%- endmacro %}

{#
    The UTC date of a timestamptz: the partition `plays` recomputes when new plays arrive.
#}
{% macro utc_date(column) -%}
    ({{ column }} at time zone 'UTC')::date
{%- endmacro %}
