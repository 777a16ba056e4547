-- Every listening mart starts here, so "how long was listened" and "which local day and hour"
-- are decided once. Timestamps stay UTC; the calendar columns use the `reporting_timezone` var.
with

plays as (

    select * from {{ ref('plays') }}

),

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
        plays.user_id,
        plays.played_at,
        plays.track_id,
        plays.primary_artist_id as artist_id,
        plays.album_id,
        plays.context_type,
        tracks.track_name,
        artists.artist_name,
        albums.album_name,
        -- LISTENED TIME (switch point): the API only tells the track's length. Once plays carries
        -- the export's `ms_played` (null for API plays), use coalesce(plays.ms_played, tracks.duration_ms).
        -- A track of unknown length counts as 0 ms rather than dropping the play from the sums.
        coalesce(tracks.duration_ms, 0)::bigint as listened_ms,
        -- the listener's wall clock: timestamp without time zone in the reporting time zone
        plays.played_at at time zone '{{ var("reporting_timezone") | replace("'", "''") }}' as played_at_local

    from plays
    -- left joins: a play must never vanish because a dimension lags behind
    left join tracks on plays.track_id = tracks.track_id
    left join artists on plays.primary_artist_id = artists.artist_id
    left join albums on plays.album_id = albums.album_id

),

final as (

    select
        ---------- ids
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
        listened_ms,
        extract(hour from played_at_local)::integer as played_hour,
        extract(isodow from played_at_local)::integer as played_weekday,

        ---------- dates and timestamps
        played_at_local::date as played_date,
        -- played_at marks the end of a play (Spotify's convention), so it started this much earlier
        played_at - listened_ms * interval '1 millisecond' as started_at,
        played_at

    from joined

)

select * from final
