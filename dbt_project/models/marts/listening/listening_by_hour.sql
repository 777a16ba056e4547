-- A dense grid: every listener gets all 7 x 24 cells, zeros included, so a heatmap or a
-- "quietest hour" query needs no gap filling.
with

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

listeners as (

    select distinct user_id from listening_plays

),

weekdays as (

    select weekday from generate_series(1, 7) as weekday

),

hours as (

    select hour_of_day from generate_series(0, 23) as hour_of_day

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
        round(coalesce(per_cell.listened_ms, 0) / 60000.0, 1) as minutes_listened

    from grid
    left join per_cell
        on
            grid.user_id = per_cell.user_id
            and grid.weekday = per_cell.weekday
            and grid.hour_of_day = per_cell.hour_of_day

)

select * from final
