{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'played_date'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_delete_changed(['user_id', 'played_date']) }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    Incremental: recomputes the days of the plays listening_plays wrote or removed since this
    table's watermark (macros/listening_incremental.sql); its pre-hook deletes those days first.
#}

with

{% if is_incremental() %}

changed_days as (

    select distinct
        user_id,
        played_date
    from {{ listening_changes(listening_watermark()) }} as changed

),

listening_plays as (

    {{ lateral_lookup(ref('listening_plays'), 'changed_days', {'user_id': 'user_id', 'played_date': 'played_date'}) }}

),

{% else %}

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

{% endif %}

final as (

    select
        user_id,
        played_date,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms,
        round(sum(listened_ms) / 60000.0, 1) as minutes_listened,
        count(distinct track_id) as distinct_tracks,
        count(distinct artist_id) as distinct_artists,
        min(played_at) as first_played_at,
        max(played_at) as last_played_at,
        {{ listening_plays_marker() }} as last_load_id

    from listening_plays
    group by 1, 2

)

select * from final
