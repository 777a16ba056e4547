{{
    config(
        materialized='incremental',
        unique_key='play_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ delete_changed_days(utc_date('played_at')) }}",
    )
}}

{#-
    One row per play of `plays`, with what every listening mart needs decided once: how long was
    listened, and the local day, hour and weekday (var `reporting_timezone`). Keys and measures
    only: names are joined from tracks, artists and albums when read, so none goes stale.

    Incremental like `plays` (macros/changed_days.sql): each run recomputes the (user, UTC day)s
    that raw loads newer than this table's watermark touched, which are exactly the days `plays`
    recomputed; the pre-hook deletes them first, so a day that lost a play loses it here too.
-#}

{{ assert_reporting_timezone_unchanged() }}

{#- The (user, day)s that new loads touched (macros/changed_days.sql), as literals; none on a full build. #}
{%- set days = changed_days() %}

with

plays as (

    select * from {{ ref('plays') }}

),

{% if is_incremental() %}

changed_days as (

    select * from {{ changed_days_relation(days) }} as changed

),

changed_plays as (

    select plays.*
    from plays
    inner join changed_days
        on
            plays.user_id = changed_days.user_id
            and plays.played_date = changed_days.played_date

),

{% else %}

changed_plays as (

    select * from plays

),

{% endif %}

measured as (

    select
        *,
        -- What was heard: the export's ms_played where the export holds the play, else (the API does
        -- not say) the track's length as the API gave it with the play, so a skip only the API saw
        -- counts in full; 0 when neither is known rather than dropping the play from the sums.
        coalesce(ms_played, duration_ms, 0)::bigint as listened_ms,
        {{ reporting_local_time('played_at') }} as played_at_local

    from changed_plays

),

final as (

    select
        ---------- ids
        play_id,
        user_id,
        track_id,
        primary_artist_id as artist_id,
        album_id,

        ---------- text
        context_type,

        ---------- numerics
        listened_ms,
        extract(hour from played_at_local)::integer as played_hour,
        extract(isodow from played_at_local)::integer as played_weekday,

        ---------- booleans
        is_video,

        ---------- dates and timestamps
        played_at_local::date as played_date,
        -- played_at marks the end of a play (Spotify's convention), so it started this much earlier
        played_at - listened_ms * interval '1 millisecond' as started_at,
        played_at,

        ---------- incremental bookkeeping
        -- how far `plays` had read when this run wrote the row: the watermark of the next run, and
        -- what scopes the data tests to the rows of the latest run (macros/get_where_subquery.sql)
        (select max(last_load_id) from {{ ref('plays') }}) as last_load_id

    from measured

)

select * from final
