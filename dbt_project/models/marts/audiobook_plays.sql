{{ config(materialized='view') }}

-- Audiobook chapters from the data export (extended history, with URIs, and account data's
-- StreamingHistory_audiobook files, by name), kept apart from music. A view, like episode_plays.
with

export_plays as (

    select * from {{ ref('int_export_plays_deduplicated') }}
    where content_type = 'audiobook'

),

final as (

    select
        export_play_id as play_id,
        user_id,
        played_at,
        chapter_id,
        chapter_uri,
        chapter_title,
        audiobook_uri,
        audiobook_title,
        -- account data names the author; the extended history does not
        author_name,
        ms_played,
        export_format,
        reason_start,
        reason_end,
        skipped,
        offline,
        platform,
        conn_country

    from export_plays

)

select * from final
