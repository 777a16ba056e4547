-- A session is a run of plays with no pause longer than `session_gap_minutes` (a dbt var)
-- between the end of one play and the estimated start of the next.
{%- set gap_minutes = var('session_gap_minutes') | string | trim %}
{%- if not gap_minutes.isdigit() or gap_minutes | int == 0 %}
    {{ exceptions.raise_compiler_error(
        "var session_gap_minutes (env SESSION_GAP_MINUTES) must be a positive whole number of minutes, got '"
        ~ gap_minutes ~ "'"
    ) }}
{%- endif %}

with

listening_plays as (

    select * from {{ ref('listening_plays') }}

),

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
        sum(case when starts_session then 1 else 0 end) over (
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
        ended_at

    from per_session

)

select * from final
