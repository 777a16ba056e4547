{{
    config(
        materialized='incremental',
        unique_key='track_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ delete_unreferenced_names('track_id', 'track_id') }}",
    )
}}

{#-
    One row per track, described by its most recent play the API saw (ids, duration, album...), or,
    for a track only the export knows, by its most recent export play (names only). The API always
    wins over the export; within one source the latest play wins.

    Incremental: a run reads only loads newer than `last_load_id`, and for the tracks they mention
    weighs the new descriptions against the stored one.
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
        {% if is_incremental() %}
            and load_id > {{ load_watermark('last_load_id') }}
        {% endif %}

),

latest_api_plays as (

    -- user_id breaks ties between users who played the track at the same instant
    {{ deduplicate('api_plays', 'track_id', 'played_at desc, user_id') }}

),

latest_export_plays as (

    {{ deduplicate('export_plays', 'track_id', 'played_at desc, user_id, export_play_id') }}

),

new_descriptions as (

    select
        track_id,
        track_name,
        duration_ms,
        explicit,
        popularity,
        is_local,
        track_uri,
        album_id,
        primary_artist_id,
        'api' as described_by,
        played_at as described_at
    from latest_api_plays

    union all

    select
        track_id,
        track_name,
        null as duration_ms,
        null as explicit,
        null as popularity,
        false as is_local,
        track_uri,
        album_id,
        artist_id as primary_artist_id,
        'export' as described_by,
        played_at as described_at
    from latest_export_plays

),

{% if is_incremental() %}

stored_descriptions as (

    select
        track_id,
        track_name,
        duration_ms,
        explicit,
        popularity,
        is_local,
        track_uri,
        album_id,
        primary_artist_id,
        described_by,
        described_at
    from {{ this }}
    where track_id in (select track_id from new_descriptions)

),

{% endif %}

candidates as (

    select * from new_descriptions
    {% if is_incremental() %}
        union all
        select * from stored_descriptions
    {% endif %}

),

chosen as (

    {{ deduplicate('candidates', 'track_id', "described_by = 'api' desc, described_at desc, track_name") }}

),

final as (

    select
        chosen.*,
        -- how far this table has read: every row written by a run carries that run's newest load
        (
            select max(load_id) from (
                select load_id from api_plays
                union all
                select load_id from export_plays
            ) as read_loads
        ) as last_load_id
    from chosen
    -- only what a play references: a name-only row whose plays now carry a richer id is left out
    where
        chosen.track_id not like 'name:%'
        or exists (select from plays where plays.track_id = chosen.track_id)

)

select * from final
