-- Both export formats as one relation of plays, with the time window in which the same play,
-- seen by the API or by the other format, is looked for (macros/export_matching.sql). Extended
-- history times are exact to the second; account data truncates to the minute, so its window
-- spans that minute. A play from a Streaming_History_Video file is marked `is_video`.
with

extended_plays as (

    select * from {{ ref('stg_spotify_export__extended_plays') }}

),

account_plays as (

    select * from {{ ref('stg_spotify_export__account_plays') }}

),

export_files as (

    select * from {{ ref('stg_spotify_export__files') }}

),

-- a file's kind says whether its plays are video: the rows look like audio plays
extended_plays_marked as (

    select
        extended_plays.*,
        coalesce(export_files.file_kind = 'extended_video', false) as is_video
    from extended_plays
    left join export_files
        on
            extended_plays.load_id = export_files.load_id
            and extended_plays.file_number = export_files.file_number

),

unioned as (

    select
        export_play_id,
        'extended' as export_format,
        user_id,
        content_type,
        track_id,
        album_id,
        artist_id,
        episode_id,
        chapter_id,
        is_video,
        track_uri,
        track_name,
        artist_name,
        album_name,
        episode_uri,
        episode_name,
        show_name,
        audiobook_uri,
        audiobook_title,
        chapter_uri,
        chapter_title,
        null as author_name,
        reason_start,
        reason_end,
        platform,
        conn_country,
        shuffle,
        skipped,
        offline,
        is_incognito,
        ms_played,
        played_at,
        played_at - {{ export_match_tolerance() }} as match_window_start,
        played_at + {{ export_match_tolerance() }} as match_window_end,
        load_id

    from extended_plays_marked

    union all

    select
        export_play_id,
        'account' as export_format,
        user_id,
        content_type,
        track_id,
        album_id,
        artist_id,
        episode_id,
        chapter_id,
        false as is_video,
        null as track_uri,
        track_name,
        artist_name,
        null as album_name,
        null as episode_uri,
        episode_name,
        show_name,
        null as audiobook_uri,
        audiobook_title,
        null as chapter_uri,
        chapter_title,
        author_name,
        null as reason_start,
        null as reason_end,
        null as platform,
        null as conn_country,
        null::boolean as shuffle,
        null::boolean as skipped,
        null::boolean as offline,
        null::boolean as is_incognito,
        ms_played,
        played_at,
        played_at - {{ export_match_tolerance() }} as match_window_start,
        played_at + interval '1 minute' + {{ export_match_tolerance() }} as match_window_end,
        load_id

    from account_plays

),

final as (

    select * from unioned

)

select * from final
