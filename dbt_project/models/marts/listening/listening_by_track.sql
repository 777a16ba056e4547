{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'track_id'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_delete_changed(['user_id', 'track_id']) }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    Incremental: recomputes the (listener, track) pairs of the plays listening_plays wrote or
    removed since this table's watermark (macros/listening_incremental.sql), which its pre-hook
    deletes first, and the pairs whose track, artist or album changed since in the core marts.
#}

{%- set watermark = listening_watermark() %}

with

tracks as (

    select * from {{ ref('tracks') }}

),

artists as (

    select * from {{ ref('artists') }}

),

albums as (

    select * from {{ ref('albums') }}

),

{% if is_incremental() %}

changed_pairs as (

    select distinct
        user_id,
        track_id
    from {{ listening_changes(watermark) }} as changed

    union

    -- a track now named, credited or filed differently
    select
        stored.user_id,
        stored.track_id
    from {{ ref('tracks') }} as changed_tracks
    inner join {{ this }} as stored on changed_tracks.track_id = stored.track_id
    where
        changed_tracks.last_load_id > {{ watermark }}
        and (
            stored.track_name is distinct from changed_tracks.track_name
            or stored.artist_id is distinct from changed_tracks.primary_artist_id
            or stored.album_id is distinct from changed_tracks.album_id
        )

    union

    {{ listening_renamed('artist', ['user_id', 'track_id'], watermark) }}

    union

    {{ listening_renamed('album', ['user_id', 'track_id'], watermark) }}

),

listening_plays as (

    {{ lateral_lookup(ref('listening_plays'), 'changed_pairs', {'track_id': 'track_id', 'user_id': 'user_id'}) }}

),

{% else %}

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

{% endif %}

per_track as (

    select
        user_id,
        track_id,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms,
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
        per_track.user_id,
        per_track.track_id,
        tracks.track_name,
        tracks.primary_artist_id as artist_id,
        artists.artist_name,
        tracks.album_id,
        albums.album_name,
        per_track.plays,
        per_track.listened_ms,
        round(per_track.listened_ms / 60000.0, 1) as minutes_listened,
        per_track.days_played,
        per_track.first_played_at,
        per_track.last_played_at,
        per_track.first_played_date,
        per_track.last_played_date,
        {{ listening_plays_marker() }} as last_load_id

    from per_track
    -- current names and credits, as in the tracks mart
    left join tracks on per_track.track_id = tracks.track_id
    left join artists on tracks.primary_artist_id = artists.artist_id
    left join albums on tracks.album_id = albums.album_id

)

select * from final
