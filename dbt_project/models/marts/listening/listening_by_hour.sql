{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'weekday', 'hour_of_day'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_delete_changed(
            ['user_id', 'weekday', 'hour_of_day'], ['user_id', 'played_weekday', 'played_hour']
        ) }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    A dense grid: every listener gets all 7 x 24 cells, zeros included, so a heatmap or a
    "quietest hour" query needs no gap filling.

    Incremental: recomputes the cells (listener, weekday, hour) of the plays listening_plays wrote
    or removed since this table's watermark, and the whole grid of a new listener
    (macros/listening_incremental.sql); its pre-hook deletes those cells first.
#}

with

weekdays as (

    select weekday from generate_series(1, 7) as weekday

),

hours as (

    select hour_of_day from generate_series(0, 23) as hour_of_day

),

{% if is_incremental() %}

changed_cells as (

    select distinct
        user_id,
        played_weekday as weekday,
        played_hour as hour_of_day
    from {{ listening_changes(listening_watermark()) }} as changed

),

-- a listener with no cell left after the pre-hook is new (or changed everywhere): all 168 cells
new_listeners as (

    select distinct changed_cells.user_id
    from changed_cells
    where not exists (
        select from {{ this }} as stored
        where stored.user_id = changed_cells.user_id
    )

),

grid as (

    select * from changed_cells

    union

    select
        new_listeners.user_id,
        weekdays.weekday,
        hours.hour_of_day

    from new_listeners
    cross join weekdays
    cross join hours

),

-- the plays of the changed cells only (a new listener's other cells have none)
listening_plays as (

    {{
        lateral_lookup(
            ref('listening_plays'),
            'changed_cells',
            {'user_id': 'user_id', 'played_weekday': 'weekday', 'played_hour': 'hour_of_day'},
        )
    }}

),

{% else %}

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

listeners as (

    select distinct user_id from listening_plays

),

grid as (

    select
        listeners.user_id,
        weekdays.weekday,
        hours.hour_of_day

    from listeners
    cross join weekdays
    cross join hours

),

{% endif %}

per_cell as (

    select
        user_id,
        played_weekday as weekday,
        played_hour as hour_of_day,
        count(*) as plays,
        sum(listened_ms)::bigint as listened_ms

    from listening_plays
    group by 1, 2, 3

),

final as (

    select
        grid.user_id,
        grid.weekday,
        -- 2024-01-01 was a Monday: ISO weekday n is that date plus n - 1 days
        to_char(date '2024-01-01' + grid.weekday - 1, 'FMDay') as weekday_name,
        grid.hour_of_day,
        coalesce(per_cell.plays, 0) as plays,
        coalesce(per_cell.listened_ms, 0) as listened_ms,
        round(coalesce(per_cell.listened_ms, 0) / 60000.0, 1) as minutes_listened,
        {{ listening_plays_marker() }} as last_load_id

    from grid
    left join per_cell
        on
            grid.user_id = per_cell.user_id
            and grid.weekday = per_cell.weekday
            and grid.hour_of_day = per_cell.hour_of_day

)

select * from final
