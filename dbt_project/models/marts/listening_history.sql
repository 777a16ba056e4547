with

plays as (

    select * from {{ ref('plays') }}

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

final as (

    select
        plays.play_id,
        plays.played_at,
        plays.user_id,
        plays.track_id,
        tracks.track_name,
        tracks.duration_ms,
        artists.artist_name,
        plays.album_id,
        albums.album_name,
        plays.context_type,
        plays.source,
        plays.ms_played,
        -- scopes the data tests to the plays the latest run wrote, as on plays
        plays.last_load_id

    from plays
    -- left joins: a play must never vanish from the history because a dimension lags behind
    left join tracks on plays.track_id = tracks.track_id
    left join artists on plays.primary_artist_id = artists.artist_id
    left join albums on plays.album_id = albums.album_id

)

select * from final
