{{ config(materialized='view') }}

{#-
    A view: each read aggregates the plays it asks for. A filter on user_id and played_date reaches
    listening_plays' (user_id, played_date) index, so a month of one listener costs a month's plays.
-#}

with

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

final as (

    select
        user_id,
        played_date,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms,
        round(sum(listened_ms) / 60000.0, 1) as minutes_listened,
        count(distinct track_id) as distinct_tracks,
        count(distinct artist_id) as distinct_artists,
        min(played_at) as first_played_at,
        max(played_at) as last_played_at

    from listening_plays
    group by 1, 2

)

select * from final
