{{
    config(
        materialized='incremental',
        unique_key='album_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_unreferenced_names('album_id', 'album_id') }}",
    )
}}

{#-
    One row per album ever played, with its attributes as of its most recent play: Spotify's albums
    from the API, and albums the export names (ids `name:<md5>` of artist and album name, no type
    or release date). The API's description wins over the export's.
-#}

with

plays as (

    select * from {{ ref('plays') }}

),

api_plays as (

    select * from {{ ref('stg_spotify__plays') }}
    {% if is_incremental() %}
        where load_id > {{ load_watermark('last_load_id') }}
    {% endif %}

),

export_plays as (

    select * from {{ ref('int_export_plays_deduplicated') }}
    where
        content_type = 'track'
        and album_id is not null
        {% if is_incremental() %}
            and load_id > {{ load_watermark('last_load_id') }}
        {% endif %}

),

descriptions as (

    select
        album_id,
        album_name,
        album_type,
        album_release_date as release_date,
        album_release_date_precision as release_date_precision,
        'api' as described_by,
        played_at as described_at,
        user_id,
        load_id
    from api_plays

    union all

    select
        album_id,
        album_name,
        null as album_type,
        null as release_date,
        null as release_date_precision,
        'export' as described_by,
        played_at as described_at,
        user_id,
        load_id
    from export_plays

),

{% if is_incremental() %}

stored as (

    select
        album_id,
        album_name,
        album_type,
        release_date,
        release_date_precision,
        described_by,
        described_at,
        '' as user_id,
        last_load_id as load_id
    from {{ this }}
    where album_id in (select album_id from descriptions)

),

{% endif %}

candidates as (

    select * from descriptions
    {% if is_incremental() %}
        union all
        select * from stored
    {% endif %}

),

latest_per_album as (

    -- Spotify corrects album metadata over time; the latest play carries the current version
    {{ deduplicate('candidates', 'album_id', "described_by = 'api' desc, described_at desc, user_id desc") }}

),

final as (

    select
        album_id,
        album_name,
        album_type,
        release_date,
        release_date_precision,
        described_by,
        described_at,
        (select max(load_id) from descriptions) as last_load_id
    from latest_per_album
    -- only what a play references: a name-only row whose plays now carry a richer id is left out
    where
        latest_per_album.album_id not like 'name:%'
        or exists (select from plays where plays.album_id = latest_per_album.album_id)

)

select * from final
