with

source as (

    -- dlt creates the table with the first play it loads; an export-only listener has none yet
    select * from {{ optional_source('spotify', 'recently_played') }}

),

plays as (

    select
        user_id,
        played_at,
        _dlt_load_id,
        track,
        -- jsonb_array_elements raises on a non-array; a missing or odd `artists` yields no rows
        case
            when jsonb_typeof(track -> 'artists') = 'array' then track -> 'artists'
            else '[]'::jsonb
        end as artists

    from source

),

unnested as (

    select
        ---------- ids
        plays.user_id,
        plays.played_at,
        {{ spotify_id('track', 'plays.track') }} as track_id,
        {{ spotify_id('artist', 'credited_artist.artist') }} as artist_id,
        -- the incremental marts read only new loads
        plays._dlt_load_id as load_id,

        ---------- text
        credited_artist.artist ->> 'name' as artist_name,

        ---------- numerics
        -- 1-based, in Spotify's credit order: position 1 is the track's primary artist
        credited_artist.artist_position::integer as artist_position

    from plays
    cross join lateral jsonb_array_elements(plays.artists)
        with ordinality as credited_artist (artist, artist_position)

)

select * from unnested
