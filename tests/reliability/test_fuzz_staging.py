"""Fuzz raw -> staging -> marts with awkward but valid API items (hypothesis), through the real loader and dbt.

Each example is a batch of recently-played items: unicode of every kind, NUL characters, names of 10k+
characters or none at all, up to 40 artists, local files, optional keys missing, nulls where the API allows
them, unknown keys everywhere, plus a few unusable items (no track, a bad played_at). The batch is served by
the loopback Spotify server, loaded by the real loader into a fresh database and built with `dbt build`
(every model and test). Nothing may crash, every usable play must reach the marts with its text intact
(NULs become U+FFFD, and are counted), and every unusable item must be counted in the run's summary.
The examples are seeded, so every run tries the same batches.
"""

from __future__ import annotations

import string
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from pipelines import transform
from pipelines.database import drop_database, ensure_role_and_database
from pipelines.load.storable_text import REPLACEMENT
from pipelines.sample_server.catalog import local_track_uri
from pipelines.spotify.helpers import parse_played_at
from tests.conftest import SPOTIFY_CLIENT_SECRET, TEST_ROLE, query
from tests.reliability.helpers import RECENTLY_PLAYED
from tests.reliability.report import record

# Hypothesis tries the simplest possible batch first; the other examples carry the awkward data.
EXAMPLES = 4
SEED = 20261127
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
BASE62 = string.digits + string.ascii_letters

spotify_ids = st.text(alphabet=BASE62, min_size=22, max_size=22)
# Short text of any script (NUL included), occasionally empty; sometimes a very long name.
short_text = st.text(max_size=40)
long_text = st.text(min_size=1, max_size=20).map(lambda chunk: (chunk * 10_001)[:10_001])
names = st.one_of(short_text, short_text, short_text, long_text)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), short_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=8,
)
extra_keys = st.dictionaries(st.text(min_size=1, max_size=12).map(lambda key: "x_" + key), json_values, max_size=3)


def maybe_drop(obj: dict, optional: list[str], dropped: list[bool]) -> dict:
    return {key: value for key, value in obj.items() if not (key in optional and dropped[optional.index(key)])}


@st.composite
def artists(draw: Any, local: bool) -> dict:
    artist_id = None if local else draw(spotify_ids)
    artist = {
        "external_urls": {} if local else {"spotify": f"https://open.spotify.com/artist/{artist_id}"},
        "href": None if local else f"https://api.spotify.com/v1/artists/{artist_id}",
        "id": artist_id,
        "name": draw(names),
        "type": "artist",
        "uri": None if local else f"spotify:artist:{artist_id}",
    }
    return artist | draw(extra_keys)


@st.composite
def tracks(draw: Any) -> dict:
    local = draw(st.integers(0, 4)) == 0  # a local file, now and then
    track_artists = draw(st.lists(artists(local), min_size=1, max_size=draw(st.sampled_from([1, 3, 40]))))
    name, album_name = draw(names), draw(names)
    album_id, track_id = (None, None) if local else (draw(spotify_ids), draw(spotify_ids))
    release_date = None if local else draw(st.sampled_from(["1997", "2001-05", "2016-04-08"]))
    album_optional = ["images", "release_date_precision", "available_markets", "total_tracks"]
    album = maybe_drop(
        {
            "album_type": None if local else draw(st.sampled_from(["album", "single", "compilation"])),
            "artists": track_artists[:1] if not local else [],
            "available_markets": [] if local else draw(st.lists(st.sampled_from(["DE", "JP", "US"]), max_size=3)),
            "external_urls": {},
            "href": None,
            "id": album_id,
            "images": [] if local else [{"height": 64, "url": "https://i.scdn.co/image/x", "width": 64}],
            "name": album_name,
            "release_date": release_date,
            "release_date_precision": None if local else {4: "year", 7: "month", 10: "day"}[len(release_date)],
            "total_tracks": draw(st.integers(1, 500)),
            "type": "album",
            "uri": None if local else f"spotify:album:{album_id}",
        },
        album_optional,
        draw(st.lists(st.booleans(), min_size=4, max_size=4)),
    ) | draw(extra_keys)
    duration_ms = draw(st.integers(0, 2**31 - 1))
    uri = (
        local_track_uri(track_artists[0]["name"], album_name, name, duration_ms)
        if local
        else f"spotify:track:{track_id}"
    )
    track_optional = ["popularity", "preview_url", "external_ids", "available_markets", "explicit", "is_local"]
    track = maybe_drop(
        {
            "album": album,
            "artists": track_artists,
            "available_markets": [],
            "disc_number": draw(st.integers(0, 99)),
            "duration_ms": duration_ms,
            "explicit": draw(st.booleans()),
            "external_ids": {} if local else {"isrc": draw(st.text(alphabet=BASE62, min_size=12, max_size=12))},
            "external_urls": {},
            "href": None,
            "id": track_id,
            "is_local": local,
            "name": name,
            "popularity": draw(st.integers(0, 100)),
            "preview_url": draw(st.none() | st.just("https://p.scdn.co/mp3-preview/x")),
            "track_number": draw(st.integers(0, 999)),
            "type": "track",
            "uri": uri,
        },
        track_optional,
        draw(st.lists(st.booleans(), min_size=6, max_size=6)),
    )
    return track | draw(extra_keys)


contexts = st.none() | st.builds(
    lambda kind, context_id, extra: (
        {
            "type": kind,
            "href": None,
            "external_urls": {},
            "uri": f"spotify:{kind}:{context_id}",
        }
        | extra
    ),
    st.sampled_from(["playlist", "album", "artist", "show", "collection"]),
    spotify_ids,
    extra_keys,
)
unusable_items = st.sampled_from(
    [
        {"track": None, "played_at": "2025-12-31T23:00:00.000Z", "context": None},
        {"played_at": "2025-12-31T23:01:00.000Z"},
        {"track": {"name": "no time"}, "played_at": "soon"},
        {"track": {"name": "no time"}, "played_at": None},
        ["not", "an", "object"],
    ]
)


@st.composite
def batches(draw: Any) -> tuple[list[dict], int]:
    """Items for one API response (usable ones with distinct millisecond timestamps), and how many are unusable.

    A few tracks, each played several times, as in real listening: a full page of plays costs hypothesis far
    fewer draws than a page of distinct tracks, so examples stay large without exhausting its buffer.
    """
    played = draw(st.lists(tracks(), min_size=1, max_size=6))
    offsets = draw(st.lists(st.integers(0, 10**10), min_size=10, max_size=50, unique=True))  # a full page at most
    usable = [
        {
            "track": played[draw(st.integers(0, len(played) - 1))],
            "played_at": spotify_time(offset),
            "context": draw(contexts),
        }
        for offset in sorted(offsets, reverse=True)
    ]
    usable[0] |= draw(extra_keys)
    unusable = draw(st.lists(unusable_items, min_size=1, max_size=3))
    return usable + unusable, len(unusable)


def spotify_time(offset_ms: int) -> str:
    moment = EPOCH + timedelta(milliseconds=offset_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def storable(value: Any) -> Any:
    """What PostgreSQL keeps of a served value: NULs replaced, everything else byte for byte.

    Numbers compare as numbers: JSON has one number type, and jsonb writes -3.7e+36 back as
    -3701974858569763000000000000000000000, the same value.
    """
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def count_nul_strings(value: Any) -> int:
    if isinstance(value, str):
        return int("\x00" in value)
    if isinstance(value, dict):
        return sum(count_nul_strings(key) + count_nul_strings(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(count_nul_strings(item) for item in value)
    return 0


def test_awkward_valid_items_reach_the_marts_intact_and_unusable_ones_are_counted(
    spotify_server, postgres_admin, test_role_password, tmp_path, database_url
):
    # One database name for every example (dropped and made again), so dbt's partial parse stays valid.
    dbname = f"{database_url.dbname}_fuzz"
    totals = {"batches": 0, "plays": 0, "lost": 0, "duplicated": 0, "rejected": 0, "repaired": 0}

    # Seeded, so every run tries the same batches; no shrinking, as each step would cost a dbt build (the
    # failing batch is reported as generated).
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=batches())
    def check(batch: tuple[list[dict], int]) -> None:
        items, unusable = batch
        usable = items[: len(items) - unusable]
        drop_database(postgres_admin, dbname)
        database = ensure_role_and_database(postgres_admin, TEST_ROLE, test_role_password, dbname)
        spotify_server.enqueue_fault(RECENTLY_PLAYED, 200, body={"items": items, "next": None})

        summary = load_with(database)
        # Every model and data test (unit tests use fixed inputs, not these); raises if any fails.
        transform.run_dbt(database, "build", "--quiet", "--exclude-resource-type", "unit_test")

        # Measured against the marts, and counted before any assertion can stop the example.
        built = Counter(row[0] for row in query(database, "select played_at from analytics.listening_history"))
        served = {parse_played_at(item["played_at"]) for item in usable}
        totals["batches"] += 1
        totals["lost"] += len(served - set(built))
        totals["duplicated"] += sum(count - 1 for count in built.values())
        assert (summary["plays_loaded"], summary["items_rejected"]) == (len(usable), unusable)
        stored_parts = [[item["track"], item["context"]] for item in usable]  # what the loader keeps of an item
        assert summary["strings_repaired"] == count_nul_strings(stored_parts)
        stored = query(database, "select track from raw.recently_played order by played_at desc")
        assert [storable(row[0]) for row in stored] == [storable(item["track"]) for item in usable]  # extras kept
        history = query(
            database, "select track_name, album_name from analytics.listening_history order by played_at desc"
        )
        assert history == [(storable(i["track"]["name"]), storable(i["track"]["album"]["name"])) for i in usable]
        credited = query(database, "select count(*) from staging.stg_spotify__play_artists")
        assert credited == [(sum(len(item["track"]["artists"]) for item in usable),)]
        totals["plays"] += len(usable)
        totals["rejected"] += unusable
        totals["repaired"] += summary["strings_repaired"]

    def load_with(database):
        from pipelines.load import load_recently_played

        return load_recently_played(
            database,
            pipelines_dir=tmp_path / uuid.uuid4().hex,  # no state from an earlier example
            secrets_file=tmp_path / "secrets.toml",
            client_id="test-client-id",
            client_secret=SPOTIFY_CLIENT_SECRET,
            refresh_token=spotify_server.current_refresh_token,
            api_url=spotify_server.api_url,
            accounts_url=spotify_server.accounts_url,
        )

    try:
        check()
    finally:
        drop_database(postgres_admin, dbname)
        # Batches, not plays, are counted: hypothesis' batches are seeded, but their sizes may vary between sessions.
        record(
            "API items",
            "Fuzzed batches of awkward valid items (hypothesis, up to 50 plays each, NULs included)",
            tried=totals["batches"],
            lost=totals["lost"],
            duplicated=totals["duplicated"],
            result="every play loaded and built by dbt intact; NUL strings repaired and counted",
        )
    assert (totals["lost"], totals["duplicated"]) == (0, 0)
    assert totals["batches"] == EXAMPLES
    assert totals["plays"] >= EXAMPLES and totals["rejected"] >= EXAMPLES
    record(
        "API items",
        "Fuzzed unusable items, 1 to 3 mixed into each batch",
        tried=EXAMPLES,
        lost=None,
        duplicated=0,
        result="skipped and counted in the run summary",
    )
