{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'artist_id'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_delete_changed(['user_id', 'artist_id']) }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    Incremental: recomputes the (listener, artist) pairs of the plays listening_plays wrote or
    removed since this table's watermark (macros/listening_incremental.sql), which its pre-hook
    deletes first, and renames the artists renamed since.
#}

{%- set watermark = listening_watermark() %}

with

artists as (

    select * from {{ ref('artists') }}

),

{% if is_incremental() %}

changed_pairs as (

    select distinct
        user_id,
        artist_id
    from {{ listening_changes(watermark) }} as changed

    union

    {{ listening_renamed('artist', ['user_id', 'artist_id'], watermark) }}

),

listening_plays as (

    {{ lateral_lookup(ref('listening_plays'), 'changed_pairs', {'artist_id': 'artist_id', 'user_id': 'user_id'}) }}

),

{% else %}

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

{% endif %}

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
        per_artist.last_played_date,
        {{ listening_plays_marker() }} as last_load_id

    from per_artist
    left join artists on per_artist.artist_id = artists.artist_id

)

select * from final
