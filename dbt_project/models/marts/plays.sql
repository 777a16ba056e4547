{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'played_at'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

new_plays as (

    select * from plays
    {% if is_incremental() %}
        -- Filter on the load, not on played_at: a later backfill (an export import, a missed
        -- window) brings plays older than the newest one, and they must still be picked up.
        where load_id > (select coalesce(max(load_id), '') from {{ this }})
    {% endif %}

),

final as (

    select
        user_id,
        played_at,
        track_id,
        album_id,
        primary_artist_id,
        context_type,
        context_uri,
        load_id

    from new_plays

)

select * from final
