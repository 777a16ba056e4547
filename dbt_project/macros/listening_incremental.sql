{#
    How the listening marts (models/marts/listening) stay incremental and exact.

    `listening_plays` replaces, on every run, each UTC (user, day) that `plays` may have rewritten
    since it last read it, and restates the plays whose track, artist or album has changed its name
    or length since. Every row it writes for a new or changed play carries `last_load_id`: the
    newest load of `plays` at that run. A play that vanished from `plays` (an export play merged
    into an API play) or now credits another track or artist is recorded, with its old keys, in
    `int_listening_plays_removed`, with the same marker.

    Each other listening mart keeps its own watermark (the newest `last_load_id` it has read) and
    recomputes only the keys (day, weekday and hour, artist, track, or the sessions from a restart
    point on) of the plays written or removed since: an hourly run costs the same however long the
    history. A pre-hook deletes those keys first, so a key that lost all its plays disappears too.
#}


{#
    A timestamptz as the listener's wall clock (timestamp without time zone) in the `reporting_timezone` var.
#}
{% macro reporting_local_time(column) -%}
    ({{ column }} at time zone '{{ var("reporting_timezone") | replace("'", "''") }}')
{%- endmacro %}


{#
    load_watermark('last_load_id') of a listening mart, with a clear message for a table built
    before the listening marts were incremental (no `last_load_id`, and none of their indexes).
#}
{% macro listening_watermark() -%}
    {%- if execute and is_incremental() -%}
        {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- if 'last_load_id' not in columns -%}
            {{ exceptions.raise_compiler_error(
                this ~ " was built before the listening marts were incremental: run "
                ~ "`dbt build --full-refresh --select listening_plays+` once"
            ) }}
        {%- endif -%}
    {%- endif -%}
    {{ load_watermark('last_load_id') }}
{%- endmacro %}


{#
    listening_plays' watermark. Its local dates and hours were computed in the time zone of their
    run: if the newest row no longer matches the `reporting_timezone` var, an incremental run would
    mix two zones, so it stops and asks for a full refresh (a zone with the same UTC offset at that
    instant, e.g. Europe/Berlin for Europe/Paris, is not detected: full-refresh after any change).
#}
{% macro listening_plays_watermark() -%}
    {%- set watermark = listening_watermark() | trim -%}
    {%- if execute and is_incremental() and watermark != "''" -%}
        {%- set check_query -%}
            select
                played_date = {{ reporting_local_time('played_at') }}::date
                and played_hour = extract(hour from {{ reporting_local_time('played_at') }})::integer
            from {{ this }}
            where last_load_id = {{ watermark }}
            limit 1
        {%- endset -%}
        {%- set rows = run_query(check_query).rows -%}
        {%- if rows and not rows[0][0] -%}
            {{ exceptions.raise_compiler_error(
                "reporting_timezone is now '" ~ var("reporting_timezone") ~ "', but " ~ this
                ~ " was built in another time zone: run `dbt build --full-refresh --select listening_plays+`"
            ) }}
        {%- endif -%}
    {%- endif -%}
    {{ watermark }}
{%- endmacro %}


{#
    The UTC (user, day)s that `plays` may have rewritten since listening_plays read loads up to
    `watermark`. `plays` recomputes the days within one reach (export_match_reach) of a new play;
    that play is in `plays` as a row of a newer load at most one reach away (an export play is
    absorbed by the API play it matches, which takes the newer load id). So the days within two
    reaches of the rows of newer loads hold every row that may have changed or vanished.
#}
{% macro listening_plays_changed_windows(watermark) -%}
    (
        select distinct
            changed_plays.user_id,
            {{ utc_date('edges.edge') }} as utc_date
        from {{ ref('plays') }} as changed_plays
        cross join lateral (
            values
            (changed_plays.played_at - 2 * {{ export_match_reach() }}),
            (changed_plays.played_at + 2 * {{ export_match_reach() }})
        ) as edges (edge)
        where changed_plays.load_id > {{ watermark }}
    )
{%- endmacro %}


{#
    listening_plays' pre-hook: deletes the changed windows (the model then inserts them afresh from
    `plays`) and records the deleted plays that will not come back with the same track and artist.
    The lateral lookups make every probe an index scan whatever the planner estimates.
#}
{% macro listening_plays_delete_changed_windows() -%}
    {%- if is_incremental() -%}
        with

        removed as (
            delete from {{ this }} as stored
            where stored.play_id = any(array(
                select window_rows.play_id
                from {{ listening_plays_changed_windows(listening_plays_watermark()) }} as windows
                cross join lateral (
                    select in_window.play_id
                    from {{ this }} as in_window
                    where
                        in_window.user_id = windows.user_id
                        and in_window.played_at >= windows.utc_date::timestamp at time zone 'UTC'
                        and in_window.played_at < (windows.utc_date + 1)::timestamp at time zone 'UTC'
                    offset 0  -- a planner fence: PostgreSQL would flatten a plain subquery into a (hash) join
                ) as window_rows
            ))
            returning stored.*
        )

        insert into {{ ref('int_listening_plays_removed') }} (
            play_id, user_id, played_at, played_date, played_weekday, played_hour, track_id, artist_id,
            removed_load_id
        )
        select
            removed.play_id,
            removed.user_id,
            removed.played_at,
            removed.played_date,
            removed.played_weekday,
            removed.played_hour,
            removed.track_id,
            removed.artist_id,
            (select max(load_id) from {{ ref('plays') }})
        from removed
        left join lateral (
            select true as is_kept
            from {{ ref('plays') }} as plays
            where
                plays.play_id = removed.play_id
                and plays.track_id = removed.track_id
                and plays.primary_artist_id = removed.artist_id
            limit 1
        ) as kept on true
        where kept.is_kept is null
    {%- endif -%}
{%- endmacro %}


{#
    The marker the downstream listening marts write: how far into listening_plays they have read.
#}
{% macro listening_plays_marker() -%}
    (select max(last_load_id) from {{ ref('listening_plays') }})
{%- endmacro %}


{#
    The plays listening_plays wrote or removed after `watermark` (a literal), with the keys the
    downstream marts group by. A removed play appears with its old keys; a rewritten one with its
    new keys, which for the same play are its old keys too (only `int_listening_plays_removed`
    holds plays whose keys changed).
#}
{% macro listening_changes(watermark) -%}
    (
        select user_id, played_at, played_date, played_weekday, played_hour, track_id, artist_id
        from {{ ref('listening_plays') }}
        where last_load_id > {{ watermark }}

        union all

        select user_id, played_at, played_date, played_weekday, played_hour, track_id, artist_id
        from {{ ref('int_listening_plays_removed') }}
        where removed_load_id > {{ watermark }}
    )
{%- endmacro %}


{#
    Pre-hook of an aggregating listening mart: deletes the rows whose key a changed play has, so
    that the model can insert them recomputed (and a key left without plays is gone).

    Args:
        keys: the mart's key columns.
        changed_columns: the matching columns of listening_changes(), when named differently.
#}
{% macro listening_delete_changed(keys, changed_columns=none) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where ({{ keys | join(', ') }}) in (
            select {{ (changed_columns or keys) | join(', ') }}
            from {{ listening_changes(listening_watermark()) }} as changed
        )
    {%- endif -%}
{%- endmacro %}


{#
    Where listening_sessions restarts, per listener with changed plays: a session's number counts
    every earlier session, so a changed play renumbers all later ones. Plays before the earliest
    changed (or removed) play are unchanged, and so is every session before the one holding the
    last of them (the previous play). That session is unchanged too if it ended with the previous
    play and the next play now starts a session of its own: then recomputing starts at the changed
    plays, numbered after it; else at that session's first play, numbered as it was. Returns rows
    (user_id, restart as text or none for "from the first play", first session number).
#}
{% macro listening_sessions_restarts() -%}
    {%- if not (execute and is_incremental()) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set gap_minutes = var('session_gap_minutes') | string | trim | int -%}
    {%- set restarts_query -%}
        with

        changed as (
            select
                user_id,
                min(played_at) as changed_from
            from {{ listening_changes(listening_watermark()) }} as changed
            group by 1
        ),

        neighbours as (
            select
                changed.user_id,
                changed.changed_from,
                (
                    select max(listening_plays.played_at)
                    from {{ ref('listening_plays') }} as listening_plays
                    where
                        listening_plays.user_id = changed.user_id
                        and listening_plays.played_at < changed.changed_from
                ) as previous_played_at,
                (
                    select listening_plays.started_at
                    from {{ ref('listening_plays') }} as listening_plays
                    where
                        listening_plays.user_id = changed.user_id
                        and listening_plays.played_at >= changed.changed_from
                    order by listening_plays.played_at
                    limit 1
                ) as next_started_at
            from changed
        )

        select
            neighbours.user_id,
            case
                when stored.session_number is null then null
                when stored.is_closed then neighbours.changed_from
                else stored.first_played_at
            end::text,
            case
                when stored.session_number is null then 1
                when stored.is_closed then stored.session_number + 1
                else stored.session_number
            end
        from neighbours
        left join lateral (
            select
                sessions.first_played_at,
                sessions.session_number,
                -- the same rule as the model's starts_session
                sessions.ended_at = neighbours.previous_played_at
                and coalesce(
                    neighbours.next_started_at - neighbours.previous_played_at
                    > {{ gap_minutes }} * interval '1 minute',
                    true
                ) as is_closed
            from {{ this }} as sessions
            where
                sessions.user_id = neighbours.user_id
                and sessions.ended_at >= neighbours.previous_played_at
            order by sessions.ended_at
            limit 1
        ) as stored on true
        order by 1
    {%- endset -%}
    {{ return(run_query(restarts_query).rows) }}
{%- endmacro %}


{#
    listening_sessions' pre-hook: deletes each restarted listener's sessions from the restart on.
#}
{% macro listening_sessions_delete_restarted() -%}
    {%- set restarts = listening_sessions_restarts() -%}
    {%- if restarts -%}
        delete from {{ this }}
        where
        {%- for restart in restarts %}
            {{ "or " if not loop.first }}(user_id = '{{ restart[0] | replace("'", "''") }}'
                and session_number >= {{ restart[2] }})
        {%- endfor %}
    {%- endif -%}
{%- endmacro %}


{#
    The rows of `relation` that match a row of the CTE `driver`, on `columns` (the relation's column
    -> the driver's column): a lateral lookup, i.e. one index probe per driver row whatever the
    planner estimates. The incremental listening marts fetch the plays of their changed keys this way.
#}
{% macro lateral_lookup(relation, driver, columns) %}
    select matched.*
    from {{ driver }}
    cross join lateral (
        select * from {{ relation }} as matched
        where
        {%- for column, driver_column in columns.items() %}
            {{ 'and ' if not loop.first }}matched.{{ column }} = {{ driver }}.{{ driver_column }}
        {%- endfor %}
        offset 0  -- a planner fence: PostgreSQL would flatten a plain subquery into a (hash) join
    ) as matched
{% endmacro %}


{#
    The `keys` of this mart's stored rows whose `entity` (artist or album: its mart, id and name
    columns of the same names) was renamed by a load newer than `watermark`.
#}
{% macro listening_renamed(entity, keys, watermark) %}
    {%- set id_column, name_column = entity ~ '_id', entity ~ '_name' %}
    select
        {%- for key in keys %}
        stored.{{ key }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref(entity ~ 's') }} as renamed
    inner join {{ this }} as stored on renamed.{{ id_column }} = stored.{{ id_column }}
    where
        renamed.last_load_id > {{ watermark }}
        and stored.{{ name_column }} is distinct from renamed.{{ name_column }}
{% endmacro %}


{#
    The ids of the tracks, artists or albums (`entity`) that a load newer than `watermark` changed in
    one of `columns` since this mart stored them. Every stored row of an entity carries its current
    values, so one stored row per entity, found by an index probe, tells whether all of them are stale.
#}
{% macro listening_stale(entity, columns, watermark) %}
    {%- set id_column = entity ~ '_id' %}
    select changed.{{ id_column }}
    from {{ ref(entity ~ 's') }} as changed
    cross join lateral (
        select
            {%- for column in columns %}
            stored.{{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ this }} as stored
        where stored.{{ id_column }} = changed.{{ id_column }}
        limit 1
    ) as stored
    where
        changed.last_load_id > {{ watermark }}
        and (
            {%- for column in columns %}
            {{ 'or ' if not loop.first }}stored.{{ column }} is distinct from changed.{{ column }}
            {%- endfor %}
        )
{% endmacro %}
