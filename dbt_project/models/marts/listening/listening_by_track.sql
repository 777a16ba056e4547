{{ config(materialized='view') }}

{#-
    A view: the counts come from listening_plays; the track's name, primary artist and album, and
    their names, from the dimensions when read. A filter on user_id and track_id reaches
    listening_plays' (track_id, user_id) index.
-#}

with

listening_plays as (

    select * from {{ ref('listening_plays') }}

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

per_track as (

    select
        user_id,
        track_id,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms,
        count(distinct played_date) as days_played,
        min(played_at) as first_played_at,
        max(played_at) as last_played_at,
        min(played_date) as first_played_date,
        max(played_date) as last_played_date

    from listening_plays
    group by 1, 2

),

final as (

    select
        per_track.user_id,
        per_track.track_id,
        tracks.track_name,
        tracks.primary_artist_id as artist_id,
        artists.artist_name,
        tracks.album_id,
        albums.album_name,
        per_track.plays,
        per_track.listened_ms,
        round(per_track.listened_ms / 60000.0, 1) as minutes_listened,
        per_track.days_played,
        per_track.first_played_at,
        per_track.last_played_at,
        per_track.first_played_date,
        per_track.last_played_date

    from per_track
    -- current names and credits, as in the tracks mart; left joins: the counts must not vanish
    -- because a dimension lags behind
    left join tracks on per_track.track_id = tracks.track_id
    left join artists on tracks.primary_artist_id = artists.artist_id
    left join albums on tracks.album_id = albums.album_id

)

select * from final
