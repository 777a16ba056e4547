{{ config(materialized='view') }}

{#-
    A view: the counts come from listening_plays and the name from artists when read. A filter on
    user_id and artist_id reaches listening_plays' (artist_id, user_id) index.
-#}

with

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

artists as (

    select * from {{ ref('artists') }}

),

per_artist as (

    select
        user_id,
        artist_id,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms,
        count(distinct track_id) as distinct_tracks,
        count(distinct played_date) as days_played,
        min(played_at) as first_played_at,
        max(played_at) as last_played_at,
        min(played_date) as first_played_date,
        max(played_date) as last_played_date

    from listening_plays
    -- a play of an unnamed artist (account data's "Unknown Artist") counts for no artist
    where artist_id is not null
    group by 1, 2

),

final as (

    select
        per_artist.user_id,
        per_artist.artist_id,
        artists.artist_name,
        per_artist.plays,
        per_artist.listened_ms,
        round(per_artist.listened_ms / 60000.0, 1) as minutes_listened,
        per_artist.distinct_tracks,
        per_artist.days_played,
        per_artist.first_played_at,
        per_artist.last_played_at,
        per_artist.first_played_date,
        per_artist.last_played_date

    from per_artist
    -- a left join: the counts must not vanish because the dimension lags behind
    left join artists on per_artist.artist_id = artists.artist_id

)

select * from final
