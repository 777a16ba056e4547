with

source as (

    select * from {{ optional_source('spotify_export', 'export_account_plays') }}

),

-- Account data writes "Unknown Artist" / "Unknown Track" where it has no name (Spotify's
-- placeholders, not names): as names they would become one artist and one track with thousands
-- of plays, so they are nulls here.
named as (

    select
        *,
        nullif(artist_name, 'Unknown Artist') as known_artist_name,
        nullif(track_name, 'Unknown Track') as known_track_name
    from source

),

renamed as (

    select
        ---------- ids
        -- the raw primary key as one value, as in stg_spotify_export__extended_plays
        md5(concat_ws('|', user_id, extract(epoch from end_time)::bigint, ms_played, item_key, occurrence)) as export_play_id,
        user_id,
        -- account data has no URIs: tracks, episodes and chapters are known by name only
        case when known_track_name is not null then {{ name_id(['known_artist_name', 'known_track_name']) }} end as track_id,
        case when known_track_name is not null and known_artist_name is not null then {{ name_id(['known_artist_name']) }} end as artist_id,
        -- account data names no album: the artist's album of unknown name (same id as an extended
        -- play whose album name is missing)
        case when known_track_name is not null then {{ name_id(['known_artist_name', 'null']) }} end as album_id,
        case when episode_name is not null then {{ name_id(['podcast_name', 'episode_name']) }} end as episode_id,
        case when chapter_name is not null then {{ name_id(['audiobook_name', 'chapter_name']) }} end as chapter_id,
        _dlt_load_id as load_id,

        ---------- text
        case
            when known_track_name is not null then 'track'
            when episode_name is not null then 'episode'
            when chapter_name is not null or audiobook_name is not null then 'audiobook'
            -- a music row whose track is the placeholder: a play of something unnamed
            else 'unknown'
        end as content_type,
        known_track_name as track_name,
        known_artist_name as artist_name,
        episode_name,
        podcast_name as show_name,
        audiobook_name as audiobook_title,
        chapter_name as chapter_title,
        author_name,

        ---------- numerics
        ms_played,
        -- the file it came from, by number within its import (names: stg_spotify_export__files)
        file_number,
        occurrence,

        ---------- timestamps
        -- when the play ended, truncated to the minute by Spotify
        end_time as played_at

    from named

)

select * from renamed
