{{
    config(
        materialized='incremental',
        unique_key='artist_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_unreferenced_names('artist_id', 'primary_artist_id') }}",
    )
}}

{#-
    One row per artist ever credited on a play, with the most recently credited name: Spotify's
    artists from the API's credits, and artists the export names (ids `name:<md5>`).
-#}

with

plays as (

    select * from {{ ref('plays') }}

),

play_artists as (

    select * from {{ ref('stg_spotify__play_artists') }}
    {% if is_incremental() %}
        where load_id > {{ load_watermark('last_load_id') }}
    {% endif %}

),

export_plays as (

    select * from {{ ref('int_export_plays_deduplicated') }}
    where
        content_type = 'track'
        and artist_id is not null
        {% if is_incremental() %}
            and load_id > {{ load_watermark('last_load_id') }}
        {% endif %}

),

credits as (

    select
        artist_id,
        artist_name,
        played_at as credited_at,
        user_id,
        artist_position,
        load_id
    from play_artists

    union all

    select
        artist_id,
        artist_name,
        played_at as credited_at,
        user_id,
        1 as artist_position,
        load_id
    from export_plays

),

{% if is_incremental() %}

stored as (

    select
        artist_id,
        artist_name,
        credited_at,
        '' as user_id,
        0 as artist_position,
        last_load_id as load_id
    from {{ this }}
    where artist_id in (select artist_id from credits)

),

{% endif %}

candidates as (

    select * from credits
    {% if is_incremental() %}
        union all
        select * from stored
    {% endif %}

),

latest_per_artist as (

    -- artists get renamed; the latest credit carries the current name
    {{ deduplicate('candidates', 'artist_id', 'credited_at desc, user_id desc, artist_position') }}

),

final as (

    select
        artist_id,
        artist_name,
        credited_at,
        (select max(load_id) from credits) as last_load_id
    from latest_per_artist
    -- only what a play references: a name-only row whose plays now carry a richer id is left out
    where
        latest_per_artist.artist_id not like 'name:%'
        or exists (select from plays where plays.primary_artist_id = latest_per_artist.artist_id)

)

select * from final
