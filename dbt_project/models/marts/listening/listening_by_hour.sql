{{ config(materialized='view') }}

{#-
    A dense grid: every listener gets all 7 x 24 cells, zeros included, so a heatmap or a "quietest
    hour" query needs no gap filling. A view: a filter on user_id, weekday and hour_of_day reaches
    both branches of `cells`, and so listening_plays' (user_id, played_weekday, played_hour) index.
-#}

with recursive

-- not materialized: read twice, a CTE would be computed in full before a filter on the view applies
listening_plays as not materialized (

    select * from {{ ref('listening_plays') }}

),

-- every listener once, by one index probe each (a loose index scan): `distinct` would read every play
listeners as (

    select min(user_id) as user_id from listening_plays

    union all

    select (
        select min(listening_plays.user_id)
        from listening_plays
        where listening_plays.user_id > listeners.user_id
    )
    from listeners
    where listeners.user_id is not null

),

weekdays as (

    select weekday from generate_series(1, 7) as weekday

),

hours as (

    select hour_of_day from generate_series(0, 23) as hour_of_day

),

-- every play in its cell, and every cell of the grid once with nothing in it
cells as (

    select
        user_id,
        played_weekday as weekday,
        played_hour as hour_of_day,
        1 as plays,
        listened_ms

    from listening_plays

    union all

    select
        listeners.user_id,
        weekdays.weekday,
        hours.hour_of_day,
        0 as plays,
        0 as listened_ms

    from listeners
    cross join weekdays
    cross join hours
    where listeners.user_id is not null

),

per_cell as (

    select
        user_id,
        weekday,
        hour_of_day,
        sum(plays) as plays,
        sum(listened_ms)::bigint as listened_ms

    from cells
    group by 1, 2, 3

),

final as (

    select
        user_id,
        weekday,
        -- 2024-01-01 was a Monday: ISO weekday n is that date plus n - 1 days
        to_char(date '2024-01-01' + weekday - 1, 'FMDay') as weekday_name,
        hour_of_day,
        plays,
        listened_ms,
        round(listened_ms / 60000.0, 1) as minutes_listened

    from per_cell

)

select * from final
