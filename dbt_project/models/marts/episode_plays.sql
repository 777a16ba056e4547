{{ config(materialized='view') }}

-- Podcast episodes from the data export (the API's recently-played lists tracks only): kept apart
-- from music so that listening statistics are not skewed by hour-long episodes. A view: always in
-- step with the raw tables, and free to build.
with

export_plays as (

    select * from {{ ref('int_export_plays_deduplicated') }}
    where content_type = 'episode'

),

final as (

    select
        export_play_id as play_id,
        user_id,
        played_at,
        episode_id,
        episode_uri,
        episode_name,
        show_name,
        ms_played,
        -- a video podcast, from a Streaming_History_Video file
        is_video,
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
