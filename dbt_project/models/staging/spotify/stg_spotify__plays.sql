with

source as (

    -- dlt creates the table with the first play it loads; an export-only listener has none yet
    select * from {{ optional_source('spotify', 'recently_played') }}

),

renamed as (

    select
        ---------- ids
        user_id,
        {{ spotify_id('track', 'track') }} as track_id,
        {{ spotify_id('album', 'track') }} as album_id,
        {{ spotify_id('artist', "track -> 'artists' -> 0") }} as primary_artist_id,
        -- dlt's load id sorts as text; the incremental mart relies on that
        _dlt_load_id as load_id,

        ---------- text
        -- `->>` returns the JSON string's own text: names arrive byte-for-byte
        track ->> 'uri' as track_uri,
        track ->> 'name' as track_name,
        track -> 'album' ->> 'name' as album_name,
        -- matches the export's artist name when a play is known by name only
        track -> 'artists' -> 0 ->> 'name' as primary_artist_name,
        track -> 'album' ->> 'album_type' as album_type,
        -- kept as given ("1997", "2001-05", "2016-04-08"): a date would invent a month and day
        track -> 'album' ->> 'release_date' as album_release_date,
        track -> 'album' ->> 'release_date_precision' as album_release_date_precision,
        context ->> 'type' as context_type,
        context ->> 'uri' as context_uri,

        ---------- numerics
        (track ->> 'duration_ms')::integer as duration_ms,
        -- absent for some tracks (and always 0 for local files): a missing key becomes null
        (track ->> 'popularity')::integer as popularity,

        ---------- booleans
        (track ->> 'explicit')::boolean as explicit,
        -- a local file's uri says so even if an older payload lacks the flag
        coalesce(
            (track ->> 'is_local')::boolean,
            track ->> 'uri' like 'spotify:local:%'
        ) as is_local,

        ---------- timestamps
        played_at

    from source

)

select * from renamed
