{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'session_number'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="
            {% set days = changed_days() %}
            {% if days %}
            -- each changed listener's sessions that began on or after their first changed day: the
            -- query recomputes them (and the session before, if the changes reach it)
            delete from {{ this }} as stored
            using (
                select
                    user_id,
                    min(played_date)::timestamp at time zone 'UTC' as changed_from
                from {{ changed_days_relation(days) }} as changed
                group by 1
            ) as changed
            where
                stored.user_id = changed.user_id
                and stored.first_played_at >= changed.changed_from
            {% endif %}
        ",
    )
}}

{#-
    A session is a run of plays with no pause longer than `session_gap_minutes` (a dbt var)
    between the end of one play and the estimated start of the next. A table, not a view: a
    session's number counts all the listener's earlier sessions, which a view would recount from
    the first play on every read.

    Incremental by the same changed (user, UTC day)s as listening_plays (macros/changed_days.sql).
    The plays before a listener's first changed day are unchanged, and so are their sessions but
    the last: the pre-hook deletes the sessions that began on or after that day, and this query
    recomputes from there, numbering on. It recomputes the last session before the day too (it
    keeps its number and replaces the stored row through the unique key) if that session reaches
    into the changed days or the first play now on them continues it. An hourly run recomputes the
    day's sessions; an import of old plays renumbers every later one.
-#}

{%- set gap_minutes = var('session_gap_minutes') | string | trim %}
{%- if not gap_minutes.isdigit() or gap_minutes | int == 0 %}
    {{ exceptions.raise_compiler_error(
        "var session_gap_minutes (env SESSION_GAP_MINUTES) must be a positive whole number of minutes, got '"
        ~ gap_minutes ~ "'"
    ) }}
{%- endif %}

{#- The (user, day)s that new loads touched (macros/changed_days.sql), as literals; none on a full build. #}
{%- set days = changed_days() %}

with

-- not materialized: read twice, a CTE would be computed in full before any filter applies
listening_plays as not materialized (

    select * from {{ ref('listening_plays') }}

),

{% if is_incremental() %}

changed_listeners as (

    select
        user_id,
        min(played_date)::timestamp at time zone 'UTC' as changed_from
    from {{ changed_days_relation(days) }} as changed
    group by 1

),

-- the listener's last session before the changed days (the pre-hook deleted the later ones)
previous_sessions as (

    select
        changed_listeners.user_id,
        changed_listeners.changed_from,
        previous.session_number,
        previous.first_played_at,
        previous.ended_at

    from changed_listeners
    left join lateral (
        select
            stored.session_number,
            stored.first_played_at,
            stored.ended_at
        from {{ this }} as stored
        where stored.user_id = changed_listeners.user_id
        order by stored.session_number desc
        limit 1
    ) as previous on true

),

-- the first play on the changed days, which may continue that session
next_plays as (

    select
        previous_sessions.*,
        next_play.started_at as next_started_at

    from previous_sessions
    left join lateral (
        select listening_plays.started_at
        from listening_plays
        where
            listening_plays.user_id = previous_sessions.user_id
            and listening_plays.played_at >= previous_sessions.changed_from
        order by listening_plays.played_at, listening_plays.play_id
        limit 1
    ) as next_play on true

),

-- whether that session changes: it reaches into the changed days, or their first play continues it
-- (the rule of `starts_session` below)
reopened as (

    select
        *,
        coalesce(
            ended_at >= changed_from
            or next_started_at - ended_at <= {{ gap_minutes }} * interval '1 minute',
            false
        ) as is_reopened

    from next_plays

),

-- where recomputing starts, and how many sessions come before
resume_points as (

    select
        user_id,
        case
            when session_number is null then '-infinity'
            when is_reopened then first_played_at
            else changed_from
        end as resume_from,
        case
            when session_number is null then 0
            when is_reopened then session_number - 1
            else session_number
        end as sessions_before

    from reopened

),

resumed_plays as (

    select
        listening_plays.*,
        resume_points.sessions_before

    from resume_points
    inner join listening_plays
        on
            resume_points.user_id = listening_plays.user_id
            and listening_plays.played_at >= resume_points.resume_from

),

{% else %}

resumed_plays as (

    select
        *,
        0 as sessions_before
    from listening_plays

),

{% endif %}

with_previous as (

    select
        *,
        -- play_id orders plays that ended in the same second the same way in every run
        lag(played_at) over (partition by user_id order by played_at, play_id) as previous_played_at

    from resumed_plays

),

flagged as (

    select
        *,
        -- a pause of exactly the threshold still continues the session; a skip or an overlap
        -- (start before the previous end) is no pause at all
        coalesce(
            started_at - previous_played_at > {{ gap_minutes }} * interval '1 minute',
            true
        ) as starts_session

    from with_previous

),

numbered as (

    select
        *,
        sessions_before + sum(case when starts_session then 1 else 0 end) over (
            partition by user_id order by played_at, play_id rows unbounded preceding
        ) as session_number

    from flagged

),

per_session as (

    select
        user_id,
        session_number,
        min(started_at) as started_at,
        min(played_at) as first_played_at,
        max(played_at) as ended_at,
        min(played_date) as session_date,
        count(*) as plays,
        count(distinct track_id) as distinct_tracks,
        count(distinct artist_id) as distinct_artists,
        sum(listened_ms)::bigint as listened_ms

    from numbered
    group by 1, 2

),

final as (

    select
        ---------- ids
        -- keyed on the first play, so ids survive new sessions; only a backfill into this very
        -- session (a new first play) changes its id
        md5(user_id || '|' || extract(epoch from first_played_at)::text) as session_id,
        user_id,
        session_number,

        ---------- numerics
        plays,
        distinct_tracks,
        distinct_artists,
        listened_ms,
        round(listened_ms / 60000.0, 1) as minutes_listened,
        round(extract(epoch from ended_at - started_at) / 60.0, 1) as length_minutes,

        ---------- dates and timestamps
        session_date,
        started_at,
        first_played_at,
        ended_at,

        ---------- incremental bookkeeping
        -- how far `plays` had read (listening_plays' marker): this table's watermark, and what
        -- scopes its data tests to the rows of the latest run
        (select max(last_load_id) from {{ ref('listening_plays') }}) as last_load_id

    from per_session

)

select * from final
