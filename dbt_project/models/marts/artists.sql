with

play_artists as (

    select * from {{ ref('stg_spotify__play_artists') }}

),

latest_per_artist as (

    -- artists get renamed; the latest credit carries the current name
    {{ deduplicate('play_artists', 'artist_id', 'played_at desc, user_id, artist_position') }}

),

final as (

    select
        artist_id,
        artist_name

    from latest_per_artist

)

select * from final
