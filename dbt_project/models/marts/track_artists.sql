with

latest_plays as (

    select * from {{ ref('int_plays_latest_per_track') }}

),

play_artists as (

    select * from {{ ref('stg_spotify__play_artists') }}

),

final as (

    select
        play_artists.track_id,
        play_artists.artist_id,
        play_artists.artist_position

    from latest_plays
    inner join play_artists
        on
            latest_plays.user_id = play_artists.user_id
            and latest_plays.played_at = play_artists.played_at

)

select * from final
