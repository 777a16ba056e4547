-- tracks and track_artists both describe a track "as of its most recent play"; picking that play
-- once keeps a track's primary artist and its credited artists from ever disagreeing.
with

plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

final as (

    -- user_id breaks ties between users who played the track at the same instant
    {{ deduplicate('plays', 'track_id', 'played_at desc, user_id') }}

)

select * from final
