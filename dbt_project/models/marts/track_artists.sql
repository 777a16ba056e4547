{{
    config(
        materialized='incremental',
        unique_key='track_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_unreferenced_names('track_id', 'track_id', 'tracks') }}",
    )
}}

{#-
    Bridge between tracks and every artist credited on them, as of the play that describes the
    track in `tracks` (so position 1 is always the track's primary artist). A track known only from
    the export has one credit: the artist named by the export.
-#}

with

tracks as (

    select * from {{ ref('tracks') }}
    {% if is_incremental() %}
        where last_load_id > {{ load_watermark('last_load_id') }}
    {% endif %}

),

play_artists as (

    select * from {{ ref('stg_spotify__play_artists') }}

),

api_credits as (

    select
        tracks.track_id,
        play_artists.artist_id,
        play_artists.artist_position,
        tracks.last_load_id
    from tracks
    inner join play_artists
        on
            tracks.track_id = play_artists.track_id
            and tracks.described_at = play_artists.played_at
    where tracks.described_by = 'api'

),

export_credits as (

    select
        track_id,
        primary_artist_id as artist_id,
        1 as artist_position,
        last_load_id
    from tracks
    where described_by = 'export' and primary_artist_id is not null

),

credits as (

    select * from api_credits
    union all
    select * from export_credits

),

final as (

    -- two listeners playing the track at the same instant would credit its artists twice
    {{ deduplicate('credits', 'track_id, artist_position', 'artist_id') }}

)

select * from final
