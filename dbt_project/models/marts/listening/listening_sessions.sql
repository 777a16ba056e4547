{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'session_number'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook="{{ listening_sessions_delete_restarted() }}",
    )
}}

-- depends_on: {{ ref('int_listening_plays_removed') }}

{#-
    A session is a run of plays with no pause longer than `session_gap_minutes` (a dbt var)
    between the end of one play and the estimated start of the next.

    Incremental: per listener with plays written or removed since this table's watermark, the
    sessions are recomputed from the one holding the last unchanged play on, numbered on from
    there (listening_sessions_restarts in macros/listening_incremental.sql); the pre-hook deletes
    them first. An hourly run recomputes the day's last session or two.
#}

{%- set gap_minutes = var('session_gap_minutes') | string | trim %}
{%- if not gap_minutes.isdigit() or gap_minutes | int == 0 %}
    {{ exceptions.raise_compiler_error(
        "var session_gap_minutes (env SESSION_GAP_MINUTES) must be a positive whole number of minutes, got '"
        ~ gap_minutes ~ "'"
    ) }}
{%- endif %}

with

{% if is_incremental() %}

restarts as (

    select * from (
        values
        {%- for restart in listening_sessions_restarts() %}
            (
                '{{ restart[0] | replace("'", "''") }}',
                {{ "timestamptz '" ~ restart[1] ~ "'" if restart[1] is not none else "null::timestamptz" }},
                {{ restart[2] }}::bigint
            ){{ "," if not loop.last }}
        {%- else %}
            (null::text, null::timestamptz, null::bigint)
        {%- endfor %}
    ) as restarts (user_id, restart_at, first_session_number)
    where user_id is not null

),

-- a lateral lookup: an index range scan per listener whatever the planner estimates
listening_plays as (

    select
        listening_plays.*,
        restarts.first_session_number
    from restarts
    cross join lateral (
        select * from {{ ref('listening_plays') }} as listening_plays
        where
            listening_plays.user_id = restarts.user_id
            and listening_plays.played_at >= coalesce(restarts.restart_at, '-infinity')
        offset 0  -- a planner fence: PostgreSQL would flatten a plain subquery into a (hash) join
    ) as listening_plays

),

{% else %}

listening_plays as (

    select
        *,
        1::bigint as first_session_number
    from {{ ref('listening_plays') }}

),

{% endif %}

with_previous as (

    select
        *,
        lag(played_at) over (partition by user_id order by played_at) as previous_played_at

    from listening_plays

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
        first_session_number - 1 + sum(case when starts_session then 1 else 0 end) over (
            partition by user_id order by played_at rows unbounded preceding
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
        {{ listening_plays_marker() }} as last_load_id

    from per_session

)

select * from final
