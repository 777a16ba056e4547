{#
    How close in time a play seen by the API and the same play in the data export must be to count
    as one play, and an account-data play and the same play in the extended history.

    All three sources record when the play ended: the API's `played_at` (milliseconds, observed to
    be about the end of the play, later after a pause), the extended history's `ts` (when the play
    stopped, whole seconds) and account data's `endTime` (the minute, truncated). They differ by
    clock, rounding and the API's lag. Peers match the same track within 30 s (your_spotify's
    polling), 60 s (your_spotify's imports) and 90 s (replay-crate). 60 s covers the API's lag and
    a client clock that is off by up to a minute; an account play's window is its whole minute
    plus 60 s on both sides. A wider window is safe because matching is one to one and by the same
    track: a track repeated within the window still pairs each play with its closest twin
    (docs/history-import.md). Override with `--vars '{export_match_tolerance_seconds: 30}'`.
#}
{% macro export_match_tolerance() -%}
    interval '{{ var("export_match_tolerance_seconds", 60) }} seconds'
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
