"""Every number in a Wrapped, read from the `analytics` marts in one read-only transaction.

Only `analytics` is read (the listening marts, and tracks, artists and albums for the names, which the listening
facts do not store), so a role with nothing but SELECT on `analytics` can produce a Wrapped. Days, months and
hours are those of the marts (their `reporting_timezone` dbt var). Rankings order by plays, then time listened,
then name, so ties always come out the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg2
from psycopg2 import errors as pg_errors

from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError
from pipelines.wrapped.period import Period

TOP_N = 5

_PERIOD_PLAYS = """
    from analytics.listening_plays
    where user_id = %(user_id)s and played_date between %(start)s and %(end)s
"""

# The same plays with their current names: the play's primary artist, its track and its album.
_NAMED_PERIOD_PLAYS = """
    from analytics.listening_plays as play
    left join analytics.tracks as tracks on play.track_id = tracks.track_id
    left join analytics.artists as artists on play.artist_id = artists.artist_id
    left join analytics.albums as albums on play.album_id = albums.album_id
    where play.user_id = %(user_id)s and play.played_date between %(start)s and %(end)s
"""

_TOTALS = f"""
    select
        count(*),
        coalesce(sum(listened_ms), 0),
        count(distinct track_id),
        count(distinct artist_id),
        count(distinct played_date)
    {_PERIOD_PLAYS}
"""

_TOP_ARTISTS = f"""
    select artists.artist_name, null, count(*) as plays, sum(play.listened_ms) as listened_ms
    {_NAMED_PERIOD_PLAYS}
    group by play.artist_id, artists.artist_name
    order by plays desc, listened_ms desc, artists.artist_name
    limit {TOP_N}
"""

_TOP_TRACKS = f"""
    select tracks.track_name, artists.artist_name, count(*) as plays, sum(play.listened_ms) as listened_ms
    {_NAMED_PERIOD_PLAYS}
    group by play.track_id, tracks.track_name, artists.artist_name
    order by plays desc, listened_ms desc, tracks.track_name
    limit {TOP_N}
"""

# An album's artist is the one most of its plays credit first (compilations have many).
_TOP_ALBUMS = f"""
    select
        albums.album_name,
        mode() within group (order by artists.artist_name),
        count(*) as plays,
        sum(play.listened_ms) as listened_ms
    {_NAMED_PERIOD_PLAYS}
    group by play.album_id, albums.album_name
    order by plays desc, listened_ms desc, albums.album_name
    limit {TOP_N}
"""

_BY_MONTH = """
    select date_trunc('month', played_date)::date, sum(plays), sum(listened_ms)
    from analytics.listening_daily
    where user_id = %(user_id)s and played_date between %(start)s and %(end)s
    group by 1
"""

_BY_HOUR = f"""
    select played_hour, count(*), sum(listened_ms)
    {_PERIOD_PLAYS}
    group by 1
"""

# Gaps and islands: consecutive days minus their row number give the same date.
_LONGEST_STREAK = """
    with days as (
        select played_date, played_date - (row_number() over (order by played_date))::integer as island
        from analytics.listening_daily
        where user_id = %(user_id)s and played_date between %(start)s and %(end)s
    )
    select count(*) as days, min(played_date) as first_day, max(played_date)
    from days
    group by island
    order by days desc, first_day
    limit 1
"""

_MOST_REPLAYED = f"""
    select play.played_date, tracks.track_name, artists.artist_name, count(*) as plays
    {_NAMED_PERIOD_PLAYS}
    group by play.played_date, play.track_id, tracks.track_name, artists.artist_name
    order by plays desc, play.played_date, tracks.track_name
    limit 1
"""

_BUSIEST_DAY = """
    select played_date, plays, listened_ms
    from analytics.listening_daily
    where user_id = %(user_id)s and played_date between %(start)s and %(end)s
    order by listened_ms desc, plays desc, played_date
    limit 1
"""

_NEW_ARTISTS = """
    select count(*)
    from analytics.listening_by_artist
    where user_id = %(user_id)s and first_played_date between %(start)s and %(end)s
"""

_TOP_NEW_ARTISTS = f"""
    select discovered.artist_name, null, count(*) as plays, sum(play.listened_ms) as listened_ms
    from analytics.listening_by_artist as discovered
    inner join analytics.listening_plays as play
        on discovered.user_id = play.user_id and discovered.artist_id = play.artist_id
    where discovered.user_id = %(user_id)s
        and discovered.first_played_date between %(start)s and %(end)s
        and play.played_date between %(start)s and %(end)s
    group by discovered.artist_id, discovered.artist_name
    order by plays desc, listened_ms desc, discovered.artist_name
    limit {TOP_N}
"""


@dataclass(frozen=True)
class Ranked:
    """One entry of a top list: a name, an optional second line (the artist), plays and time listened."""

    name: str
    detail: str | None
    plays: int
    listened_ms: int


@dataclass(frozen=True)
class Streak:
    days: int
    first_day: date
    last_day: date


@dataclass(frozen=True)
class Replay:
    """The single track played most often on one day."""

    day: date
    track_name: str
    artist_name: str | None
    plays: int


@dataclass(frozen=True)
class Bucket:
    """Plays and time listened in one month (`key`: its first day), hour of day (`key`: 0-23) or day."""

    key: date | int
    plays: int
    listened_ms: int


@dataclass(frozen=True)
class WrappedData:
    """Everything a Wrapped shows, for one listener and period."""

    user_id: str
    period: Period
    plays: int
    listened_ms: int
    distinct_tracks: int
    distinct_artists: int
    days_listened: int
    top_artists: list[Ranked]
    top_tracks: list[Ranked]
    top_albums: list[Ranked]
    by_month: list[Bucket]  # every month of the period, zeros included
    by_hour: list[Bucket]  # hours 0-23, zeros included
    longest_streak: Streak
    most_replayed: Replay
    busiest_day: Bucket
    new_artists: int
    top_new_artists: list[Ranked]

    @property
    def minutes_listened(self) -> int:
        """Whole minutes listened (rounded half up), the headline number."""
        return minutes(self.listened_ms)


def minutes(listened_ms: int) -> int:
    """Milliseconds as whole minutes, rounded half up."""
    return (listened_ms + 30_000) // 60_000


def _listener(cur: Any, requested: str | None, account: str | None = None) -> str:
    cur.execute("select distinct user_id from analytics.listening_plays order by 1")
    listeners = [row[0] for row in cur.fetchall()]
    if requested is not None:
        if requested not in listeners:
            who = f"account {account} (Spotify user {requested!r})" if account else f"listener {requested!r}"
            raise ConfigError(f"no plays of {who} in analytics; known: {', '.join(listeners) or 'none'}")
        return requested
    if not listeners:
        raise PipelineError("analytics has no plays yet: run `python -m pipelines run` first")
    if len(listeners) > 1:
        raise ConfigError(
            f"analytics holds several listeners ({', '.join(listeners)}): choose one with --account or --user"
        )
    return listeners[0]


def _ranked(cur: Any, statement: str, params: dict[str, Any]) -> list[Ranked]:
    cur.execute(statement, params)
    return [Ranked(name or "(unknown)", detail, int(plays), int(ms)) for name, detail, plays, ms in cur.fetchall()]


def _collect(cur: Any, period: Period, user: str | None, account: str | None) -> WrappedData:
    user_id = _listener(cur, user, account)
    params = {"user_id": user_id, "start": period.start, "end": period.end}

    cur.execute(_TOTALS, params)
    plays, listened_ms, distinct_tracks, distinct_artists, days_listened = cur.fetchone()
    if plays == 0:
        raise PipelineError(f"no plays of {user_id} between {period.start} and {period.end}: nothing to wrap")

    cur.execute(_BY_MONTH, params)
    months = {month: (int(n), int(ms)) for month, n, ms in cur.fetchall()}
    cur.execute(_BY_HOUR, params)
    hours = {hour: (int(n), int(ms)) for hour, n, ms in cur.fetchall()}
    cur.execute(_LONGEST_STREAK, params)
    streak = Streak(*cur.fetchone())
    cur.execute(_MOST_REPLAYED, params)
    replay = Replay(*cur.fetchone())
    cur.execute(_BUSIEST_DAY, params)
    busiest_date, busiest_plays, busiest_ms = cur.fetchone()
    cur.execute(_NEW_ARTISTS, params)
    (new_artists,) = cur.fetchone()

    return WrappedData(
        user_id=user_id,
        period=period,
        plays=int(plays),
        listened_ms=int(listened_ms),
        distinct_tracks=int(distinct_tracks),
        distinct_artists=int(distinct_artists),
        days_listened=int(days_listened),
        top_artists=_ranked(cur, _TOP_ARTISTS, params),
        top_tracks=_ranked(cur, _TOP_TRACKS, params),
        top_albums=_ranked(cur, _TOP_ALBUMS, params),
        by_month=[Bucket(month, *months.get(month, (0, 0))) for month in period.months()],
        by_hour=[Bucket(hour, *hours.get(hour, (0, 0))) for hour in range(24)],
        longest_streak=streak,
        most_replayed=replay,
        busiest_day=Bucket(busiest_date, int(busiest_plays), int(busiest_ms)),
        new_artists=int(new_artists),
        top_new_artists=_ranked(cur, _TOP_NEW_ARTISTS, params),
    )


def fetch(database: DatabaseUrl, period: Period, user: str | None = None, account: str | None = None) -> WrappedData:
    """Read a Wrapped's numbers for `user` (default: the only listener) in a read-only transaction.

    `account`: the account `user` is, named in errors.
    """
    conn = database.connect()
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            return _collect(cur, period, user, account)
    except pg_errors.UndefinedTable as exc:
        raise PipelineError(
            f"{exc.diag.message_primary}: build the marts first (`python -m pipelines transform`)"
        ) from None
    except pg_errors.InsufficientPrivilege as exc:
        raise ConfigError(
            f"{exc.diag.message_primary} as {database.user}: Wrapped needs SELECT on schema analytics "
            "(`python -m pipelines grant-roles` sets up a read-only analyst role)"
        ) from None
    except psycopg2.Error as exc:
        raise PipelineError(f"reading analytics failed: {exc.diag.message_primary or exc}") from None
    finally:
        conn.close()
