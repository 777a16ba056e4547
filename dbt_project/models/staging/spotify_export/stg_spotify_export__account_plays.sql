with

source as (

    select * from {{ optional_source('spotify_export', 'export_account_plays', [
        ['user_id', 'text'], ['file_number', 'integer'], ['end_time', 'timestamptz'], ['ms_played', 'bigint'],
        ['item_key', 'text'], ['artist_name', 'text'], ['track_name', 'text'], ['podcast_name', 'text'],
        ['episode_name', 'text'], ['_dlt_load_id', 'text'],
    ]) }}

),

renamed as (

    select
        ---------- ids
        md5(concat_ws('|', user_id, extract(epoch from end_time)::bigint, ms_played, item_key)) as export_play_id,
        user_id,
        -- account data has no URIs: tracks and episodes are known by name only
        case when track_name is not null then {{ name_id(['artist_name', 'track_name']) }} end as track_id,
        case when track_name is not null then {{ name_id(['artist_name']) }} end as artist_id,
        -- account data names no album: the artist's album of unknown name (same id as an extended
        -- play whose album name is missing)
        case when track_name is not null then {{ name_id(['artist_name', 'null']) }} end as album_id,
        case when episode_name is not null then {{ name_id(['podcast_name', 'episode_name']) }} end as episode_id,
        _dlt_load_id as load_id,

        ---------- text
        case
            when track_name is not null then 'track'
            when episode_name is not null then 'episode'
            else 'unknown'
        end as content_type,
        track_name,
        artist_name,
        episode_name,
        podcast_name as show_name,

        ---------- numerics
        ms_played,
        -- the file it came from, by number within its import (names: stg_spotify_export__files)
        file_number,

        ---------- timestamps
        -- when the play ended, truncated to the minute by Spotify
        end_time as played_at

    from source

)

select * from renamed
