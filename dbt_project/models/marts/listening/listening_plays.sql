{{
    config(
        materialized='incremental',
        unique_key='play_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_plays_delete_changed_windows() }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    Every listening mart starts here, so "how long was listened" and "which local day and hour"
    are decided once. Timestamps stay UTC; the calendar columns use the `reporting_timezone` var.

    Incremental (see macros/listening_incremental.sql): the pre-hook deletes each UTC (user, day)
    that `plays` may have rewritten since the last run, and this query inserts those days again from
    `plays`, plus the plays outside them whose track, artist or album changed its name or length
    (they replace their stored rows through the unique key).
#}

{%- set watermark = listening_plays_watermark() %}

with

{% if is_incremental() %}

changed_windows as (

    select * from {{ listening_plays_changed_windows(watermark) }} as windows

),

-- lateral lookups here and below: each probes an index whatever the planner estimates
window_plays as (

    {{ lateral_lookup(ref('plays'), 'changed_windows', {'user_id': 'user_id', 'played_date': 'utc_date'}) }}

),

-- The tracks (name, length), artists and albums (name) whose stored values are stale. (The stored
-- rows of the changed windows are already gone: the pre-hook deleted them.)
stale_tracks as (

    {{ listening_stale('track', ['track_name', 'duration_ms'], watermark) }}

),

renamed_artists as (

    {{ listening_stale('artist', ['artist_name'], watermark) }}

),

renamed_albums as (

    {{ listening_stale('album', ['album_name'], watermark) }}

),

-- one lookup per dimension: an `or` of three `in` lists would scan the whole table
restated as (

    select play_id, listened_ms, last_load_id
    from ({{ lateral_lookup(this, 'stale_tracks', {'track_id': 'track_id'}) }}) as of_tracks

    union

    select play_id, listened_ms, last_load_id
    from ({{ lateral_lookup(this, 'renamed_artists', {'artist_id': 'artist_id'}) }}) as of_artists

    union

    select play_id, listened_ms, last_load_id
    from ({{ lateral_lookup(this, 'renamed_albums', {'album_id': 'album_id'}) }}) as of_albums

),

candidates as (

    select
        window_plays.*,
        null::bigint as stored_listened_ms,
        null::text as stored_last_load_id
    from window_plays

    union all

    select
        plays.*,
        restated.listened_ms as stored_listened_ms,
        restated.last_load_id as stored_last_load_id
    from restated
    cross join lateral (
        select * from {{ ref('plays') }} as plays
        where plays.play_id = restated.play_id
        offset 0  -- a planner fence: PostgreSQL would flatten a plain subquery into a (hash) join
    ) as plays

),

{% else %}

candidates as (

    select
        *,
        null::bigint as stored_listened_ms,
        null::text as stored_last_load_id
    from {{ ref('plays') }}

),

{% endif %}

tracks as (

    select * from {{ ref('tracks') }}

),

artists as (

    select * from {{ ref('artists') }}

),

albums as (

    select * from {{ ref('albums') }}

),

joined as (

    select
        candidates.play_id,
        candidates.user_id,
        candidates.played_at,
        candidates.track_id,
        candidates.primary_artist_id as artist_id,
        candidates.album_id,
        candidates.context_type,
        tracks.track_name,
        artists.artist_name,
        albums.album_name,
        tracks.duration_ms,
        -- What was heard: the export's ms_played where the export holds the play, else (the API
        -- does not say) the track's full length, so a skip the export does not know counts in full.
        -- A track of unknown length counts as 0 ms rather than dropping the play from the sums.
        coalesce(candidates.ms_played, tracks.duration_ms, 0)::bigint as listened_ms,
        candidates.stored_listened_ms,
        candidates.stored_last_load_id,
        -- the listener's wall clock: timestamp without time zone in the reporting time zone
        {{ reporting_local_time('candidates.played_at') }} as played_at_local

    from candidates
    -- left joins: a play must never vanish because a dimension lags behind
    left join tracks on candidates.track_id = tracks.track_id
    left join artists on candidates.primary_artist_id = artists.artist_id
    left join albums on candidates.album_id = albums.album_id

),

final as (

    select
        ---------- ids
        play_id,
        user_id,
        track_id,
        artist_id,
        album_id,

        ---------- text
        track_name,
        artist_name,
        album_name,
        context_type,

        ---------- numerics
        duration_ms,
        listened_ms,
        extract(hour from played_at_local)::integer as played_hour,
        extract(isodow from played_at_local)::integer as played_weekday,

        ---------- dates and timestamps
        played_at_local::date as played_date,
        -- played_at marks the end of a play (Spotify's convention), so it started this much earlier
        played_at - listened_ms * interval '1 millisecond' as started_at,
        played_at,

        ---------- incremental bookkeeping
        -- a play restated for a new name only keeps its marker: the marts downstream read names
        -- from the dimensions, and only a new listened time concerns them
        case
            when listened_ms = stored_listened_ms then stored_last_load_id
            else (select max(load_id) from {{ ref('plays') }})
        end as last_load_id

    from joined

)

select * from final
