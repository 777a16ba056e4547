{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'played_date'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_changed_days() }}",
    )
}}

{#-
    One row per play, from the API and the data export together. A play both sources saw becomes
    one row: same user, same track (same id, or for plays the export knows by name only the same
    track and artist name), ends within the tolerance of `export_match_tolerance()` (60 s; the
    minute of an account-data play plus 60 s), each play matched to at most one other, the closest. The API row is kept (source 'api': its ids and
    context) and takes the export's playback fields.

    Incremental by UTC day: a run recomputes, from every source, each (user, day) that a new load
    touched (and the neighbouring day when a new play lies within the tolerance of midnight), then
    replaces those days (the pre-hook deletes them, so a day left without plays is emptied too). A
    backfill of old plays is picked up; an hourly API load recomputes one or two days, however long
    the history.
-#}

{%- set reach = export_match_reach() %}

with

{% if is_incremental() %}

{#- The (user, day)s that new loads touched (macros/changed_days.sql), as literals. -#}
{%- set days = changed_days() %}

changed_days as (

    select * from {{ changed_days_relation(days) }} as changed

),

-- Each candidate CTE reads its source once, with the day windows inside (a CTE read twice is computed
-- in full before any filter applies).
api_candidates as (

    select * from {{ ref('stg_spotify__plays') }} as candidate
    where {{ in_changed_days(days, 'candidate.played_at', reach) }}

),

export_candidates as (

    select * from {{ ref('int_export_plays_deduplicated') }} as candidate
    where candidate.content_type = 'track' and {{ in_changed_days(days, 'candidate.played_at', reach) }}

),

{% else %}

api_candidates as (

    select * from {{ ref('stg_spotify__plays') }}

),

export_candidates as (

    select * from {{ ref('int_export_plays_deduplicated') }}
    where content_type = 'track'

),

{% endif %}

pairs_by_id as (

    select
        export_candidates.export_play_id,
        api_candidates.user_id,
        api_candidates.played_at as api_played_at,
        abs(extract(epoch from api_candidates.played_at - export_candidates.played_at)) as distance_seconds
    from export_candidates
    inner join api_candidates
        on
            export_candidates.user_id = api_candidates.user_id
            and export_candidates.track_id = api_candidates.track_id
            and api_candidates.played_at
            between export_candidates.match_window_start and export_candidates.match_window_end
    where export_candidates.track_uri is not null

),

pairs_by_name as (

    select
        export_candidates.export_play_id,
        api_candidates.user_id,
        api_candidates.played_at as api_played_at,
        abs(extract(epoch from api_candidates.played_at - export_candidates.played_at)) as distance_seconds
    from export_candidates
    inner join api_candidates
        on
            export_candidates.user_id = api_candidates.user_id
            and export_candidates.track_name = api_candidates.track_name
            and export_candidates.artist_name = api_candidates.primary_artist_name
            and api_candidates.played_at
            between export_candidates.match_window_start and export_candidates.match_window_end
    where export_candidates.track_uri is null

),

pairs as (

    select * from pairs_by_id
    union all
    select * from pairs_by_name

),

best_pair_per_api_play as (

    {{ deduplicate('pairs', 'user_id, api_played_at', 'distance_seconds, export_play_id') }}

),

matches as (

    -- one export play per API play and one API play per export play, the closest in time
    {{ deduplicate('best_pair_per_api_play', 'export_play_id', 'distance_seconds, api_played_at') }}

),

api_rows as (

    select
        api_candidates.user_id,
        api_candidates.played_at,
        api_candidates.track_id,
        api_candidates.album_id,
        api_candidates.primary_artist_id,
        api_candidates.context_type,
        api_candidates.context_uri,
        api_candidates.duration_ms,
        -- the API lists audio plays; a match in an export video file says it was a video
        coalesce(matched.is_video, false) as is_video,
        'api' as source,
        matched.ms_played,
        matched.reason_start,
        matched.reason_end,
        matched.shuffle,
        matched.skipped,
        matched.offline,
        matched.platform,
        matched.conn_country,
        matched.export_play_id,
        greatest(api_candidates.load_id, matched.load_id) as load_id
    from api_candidates
    left join matches
        on
            api_candidates.user_id = matches.user_id
            and api_candidates.played_at = matches.api_played_at
    left join export_candidates as matched
        on matches.export_play_id = matched.export_play_id

),

export_rows as (

    select
        user_id,
        played_at,
        track_id,
        album_id,
        artist_id as primary_artist_id,
        null as context_type,
        null as context_uri,
        null::integer as duration_ms,
        is_video,
        'export' as source,
        ms_played,
        reason_start,
        reason_end,
        shuffle,
        skipped,
        offline,
        platform,
        conn_country,
        export_play_id,
        load_id
    from export_candidates
    where not exists (
        select from matches
        where matches.export_play_id = export_candidates.export_play_id
    )

),

unioned as (

    select * from api_rows
    union all
    select * from export_rows

),

final as (

    select
        case
            when source = 'api' then md5(concat_ws('|', 'api', user_id, extract(epoch from played_at)))
            else export_play_id
        end as play_id,
        user_id,
        played_at,
        {{ utc_date('played_at') }} as played_date,
        track_id,
        album_id,
        primary_artist_id,
        source,
        context_type,
        context_uri,
        ms_played,
        duration_ms,
        is_video,
        reason_start,
        reason_end,
        shuffle,
        skipped,
        offline,
        platform,
        conn_country,
        export_play_id,
        load_id,
        -- the newest load this run read (every row it writes carries it): scopes the data tests
        -- to the rows of the latest run (macros/get_where_subquery.sql)
        max(load_id) over () as last_load_id
    from unioned
    {% if is_incremental() %}
        -- a day just outside the changed ones was computed before; leave its rows alone
        where (user_id, {{ utc_date('played_at') }}) in (select user_id, played_date from changed_days)
    {% endif %}

)

select * from final
