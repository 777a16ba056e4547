with

source as (

    select * from {{ optional_source('spotify_export', 'export_extended_plays') }}

),

renamed as (

    select
        ---------- ids
        -- the raw primary key as one value (joins and tests need a single column): `occurrence`
        -- tells apart the rows of a file that share the rest of it (docs/history-import.md)
        md5(concat_ws('|', user_id, extract(epoch from ts)::bigint, ms_played, item_key, occurrence)) as export_play_id,
        user_id,
        case
            when spotify_track_uri like 'spotify:track:%' then split_part(spotify_track_uri, ':', 3)
            when master_metadata_track_name is not null
                then {{ name_id(['master_metadata_album_artist_name', 'master_metadata_track_name']) }}
        end as track_id,
        -- every track play gets an album and an artist, even one the export leaves unnamed
        case
            when spotify_track_uri is not null or master_metadata_track_name is not null
                then {{ name_id(['master_metadata_album_artist_name', 'master_metadata_album_album_name']) }}
        end as album_id,
        case
            when spotify_track_uri is not null or master_metadata_track_name is not null
                then {{ name_id(['master_metadata_album_artist_name']) }}
        end as artist_id,
        case
            when spotify_episode_uri like 'spotify:episode:%' then split_part(spotify_episode_uri, ':', 3)
            when episode_name is not null then {{ name_id(['episode_show_name', 'episode_name']) }}
        end as episode_id,
        case
            when audiobook_chapter_uri like 'spotify:chapter:%' then split_part(audiobook_chapter_uri, ':', 3)
            when audiobook_chapter_title is not null
                then {{ name_id(['audiobook_title', 'audiobook_chapter_title']) }}
        end as chapter_id,
        _dlt_load_id as load_id,

        ---------- text
        case
            when spotify_track_uri is not null or master_metadata_track_name is not null then 'track'
            when spotify_episode_uri is not null or episode_name is not null then 'episode'
            when audiobook_chapter_uri is not null or audiobook_title is not null then 'audiobook'
            -- real exports hold plays with no metadata at all (removed content, ads, glitches)
            else 'unknown'
        end as content_type,
        spotify_track_uri as track_uri,
        master_metadata_track_name as track_name,
        master_metadata_album_artist_name as artist_name,
        master_metadata_album_album_name as album_name,
        spotify_episode_uri as episode_uri,
        episode_name,
        episode_show_name as show_name,
        audiobook_uri,
        audiobook_title,
        audiobook_chapter_uri as chapter_uri,
        audiobook_chapter_title as chapter_title,
        reason_start,
        reason_end,
        platform,
        conn_country,

        ---------- numerics
        ms_played,
        -- the file it came from, by number within its import (names: stg_spotify_export__files)
        file_number,
        occurrence,

        ---------- booleans
        shuffle,
        skipped,
        offline,
        incognito_mode as is_incognito,

        ---------- timestamps
        -- when the play ended, like the API's played_at
        ts as played_at

    from source

)

select * from renamed
