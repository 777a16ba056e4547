with

plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

latest_per_album as (

    -- Spotify corrects album metadata over time; the latest play carries the current version
    {{ deduplicate('plays', 'album_id', 'played_at desc, user_id') }}

),

final as (

    select
        album_id,
        album_name,
        album_type,
        album_release_date as release_date,
        album_release_date_precision as release_date_precision

    from latest_per_album

)

select * from final
