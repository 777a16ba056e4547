with

latest_plays as (

    select * from {{ ref('int_plays_latest_per_track') }}

),

final as (

    select
        track_id,
        track_name,
        duration_ms,
        explicit,
        popularity,
        is_local,
        track_uri,
        album_id,
        primary_artist_id

    from latest_plays

)

select * from final
