"""What identifies an export play: every row of a file is kept, and reading the same rows again adds nothing.

Real exports hold different plays with the same `ts` (an offline session synced at once), rows identical in
every field, rows differing only in `offline_timestamp`, and account data's minute-precise times collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.export.formats import EXTENDED
from pipelines.export.raw_tables import ensure_tables
from tests.conftest import query
from tests.export.conftest import (
    ACCOUNT_DIR,
    EXTENDED_DIR,
    T0,
    USER,
    account_audiobook,
    account_music,
    endsong_play,
    offline_batch,
    track_play,
    write_json,
)
from tests.export.test_import import raw_snapshot

SYNCED_AT = T0 + timedelta(hours=2)
BATCH_ROWS = 7


def history(old_export: bool) -> list[dict]:
    """Five plays, an offline batch of seven rows synced at SYNCED_AT, three plays after it."""
    make = endsong_play if old_export else track_play
    before = [make(T0 + timedelta(minutes=4 * n), n) for n in range(5)]
    after = [make(SYNCED_AT + timedelta(minutes=4 * n), 20 + n) for n in range(1, 4)]
    return [*before, *offline_batch(SYNCED_AT, old_export=old_export), *after]


def file_name(old_export: bool) -> str:
    return "endsong_0.json" if old_export else "Streaming_History_Audio_2024_0.json"


def occurrences(database_url, track: int) -> list[tuple]:
    """(offline_timestamp, occurrence) of a track's rows at SYNCED_AT."""
    return query(
        database_url,
        "select offline_timestamp, occurrence from raw.export_extended_plays"
        " where ts = %s and master_metadata_track_name = %s order by occurrence",
        (SYNCED_AT, f"Song {track}"),
    )


@pytest.mark.parametrize("old_export", [True, False], ids=["endsong, offline ms", "2023+, offline seconds"])
def test_an_offline_batch_keeps_every_row_and_a_reimport_adds_none(old_export, import_into, database_url, tmp_path):
    played = write_json(tmp_path / EXTENDED_DIR / file_name(old_export), history(old_export))

    first = import_into(played)

    assert (first.rows_read, first.rows_loaded, first.duplicates_skipped) == (15, 15, 0)
    assert first.files_reread == 1  # the straight COPY broke the key, the scratch table numbered the rows
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(15,)]
    assert query(database_url, "select count(*) from raw.export_extended_plays where ts = %s", (SYNCED_AT,)) == [
        (BATCH_ROWS,)
    ]
    scale = 1000 if old_export else 1
    at = int(SYNCED_AT.timestamp())
    assert occurrences(database_url, 13) == [((at - 45 * 60) * scale, 0), ((at - 45 * 60) * scale, 1)]
    assert occurrences(database_url, 14) == [((at - 40 * 60) * scale, 0), ((at - 30 * 60) * scale, 1)]
    assert query(database_url, "select count(*) from raw.export_extended_plays where occurrence > 0") == [(2,)]
    stored = raw_snapshot(database_url)

    again = import_into(played)

    assert (again.rows_read, again.rows_loaded, again.duplicates_skipped) == (15, 0, 15)
    assert raw_snapshot(database_url)["export_extended_plays"] == stored["export_extended_plays"]


def test_a_later_export_holding_the_same_batch_adds_only_its_new_rows(import_into, database_url, tmp_path):
    plays = history(old_export=False)
    older = write_json(tmp_path / "old" / EXTENDED_DIR / "Streaming_History_Audio_2024_0.json", plays[: 5 + BATCH_ROWS])
    later_plays = [
        *plays[5:],
        *(track_play(SYNCED_AT + timedelta(minutes=4 * n), 30 + n) for n in range(4, 8)),
    ]
    later = write_json(tmp_path / "new" / EXTENDED_DIR / "Streaming_History_Audio_2024_0.json", later_plays)
    assert import_into(older).rows_loaded == 12

    summary = import_into(later)

    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (14, 7, 7)
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(19,)]
    assert query(database_url, "select count(*) from raw.export_extended_plays where ts = %s", (SYNCED_AT,)) == [
        (BATCH_ROWS,)
    ]


def test_different_plays_in_the_same_second_go_straight_in(import_into, database_url, tmp_path):
    same_second = [track_play(T0, n, ms_played=30_000 + n) for n in range(4)]
    played = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", same_second)

    summary = import_into(played)

    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped, summary.files_reread) == (4, 4, 0, 0)
    assert query(database_url, "select count(distinct ts), max(occurrence) from raw.export_extended_plays") == [(1, 0)]


def test_account_plays_in_the_same_minute_are_all_kept(import_into, database_url, tmp_path):
    minute = [
        account_music(T0, "Artist 1", "Song 1", 0),
        account_music(T0 + timedelta(seconds=20), "Artist 1", "Song 1", 0),  # same minute, same msPlayed
        account_music(T0 + timedelta(seconds=40), "Artist 1", "Song 1", 1_500),
        account_music(T0, "Unknown Artist", "Unknown Track", 4_000),
        account_music(T0, "Unknown Artist", "Unknown Track", 4_000),
        account_music(T0 + timedelta(minutes=3), "Artist 2", "Song 2", 180_000),
    ]
    played = write_json(tmp_path / ACCOUNT_DIR / "StreamingHistory_music_0.json", minute)

    first = import_into(played)
    again = import_into(played)

    assert (first.rows_read, first.rows_loaded, first.duplicates_skipped) == (6, 6, 0)
    assert (again.rows_read, again.rows_loaded, again.duplicates_skipped) == (6, 0, 6)
    assert query(
        database_url,
        "select artist_name, track_name, ms_played, occurrence from raw.export_account_plays"
        " where end_time = %s order by 1, 3, 4",
        (T0,),
    ) == [
        ("Artist 1", "Song 1", 0, 0),
        ("Artist 1", "Song 1", 0, 1),
        ("Artist 1", "Song 1", 1_500, 0),
        ("Unknown Artist", "Unknown Track", 4_000, 0),  # placeholders stay as the export has them
        ("Unknown Artist", "Unknown Track", 4_000, 1),
    ]


def _old_layout(database_url) -> None:
    """The raw tables as the version before `occurrence`, account audiobooks and `file_kind` created them."""
    extended = ", ".join(f"{f.column} {f.pg_type}" for f in EXTENDED.fields)
    query(
        database_url,
        f"""
        create schema raw;
        create table raw.export_extended_plays (
            user_id text not null, ts timestamptz not null, {extended}, item_key text not null,
            file_number integer not null, _dlt_load_id text not null,
            primary key (user_id, ts, ms_played, item_key)
        );
        create table raw.export_account_plays (
            user_id text not null, end_time timestamptz not null, ms_played bigint, artist_name text,
            track_name text, podcast_name text, episode_name text, item_key text not null,
            file_number integer not null, _dlt_load_id text not null,
            primary key (user_id, end_time, ms_played, item_key)
        );
        create table raw.export_files (
            _dlt_load_id text not null, user_id text not null, file_number integer not null,
            source_file text not null, export_format text not null, rows_read bigint not null,
            first_played_at timestamptz, last_played_at timestamptz,
            imported_at timestamptz not null default now(), primary key (_dlt_load_id, file_number)
        );
        insert into raw.export_account_plays values
            ('{USER}', '{T0.isoformat()}', 200000, 'Artist 1', 'Song 1', null, null,
             'name:' || chr(31) || 'Artist 1' || chr(31) || 'Song 1' || chr(31) || chr(31), 1, 'old-load');
        insert into raw.export_files values
            ('old-load', '{USER}', 1, 'my_spotify_data.zip/{ACCOUNT_DIR}/StreamingHistory_music_0.json', 'account',
             1, '{T0.isoformat()}', '{T0.isoformat()}'),
            ('old-load', '{USER}', 2, 'export/Streaming_History_Video_2020.json', 'extended', 0, null, null),
            ('old-load', '{USER}', 3, 'my history.json', 'extended', 0, null, null),
            ('old-load', '{USER}', 4, 'mine.json', 'account', 0, null, null);
        """,
    )


PRIMARY_KEYS = """
    select c.conrelid::regclass::text, array_to_string(array(
        select a.attname from unnest(c.conkey) with ordinality as k(n, i)
        join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = k.n order by k.i), ', ')
    from pg_constraint as c where c.contype = 'p' and c.connamespace = 'raw'::regnamespace order by 1
"""


def test_older_raw_tables_are_migrated_and_their_plays_still_match(import_into, database_url, tmp_path):
    _old_layout(database_url)
    account = [account_music(T0, "Artist 1", "Song 1", 200_000), account_audiobook(T0, "Dune", "Ch. 1", "Herbert", 1)]
    played = write_json(tmp_path / "StreamingHistory_music_0.json", account)

    summary = import_into(played)
    ensure_tables(database_url)  # again: nothing left to do

    # The stored music play keeps its key: read again, it is a duplicate; the audiobook play is new.
    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (2, 1, 1)
    assert query(database_url, PRIMARY_KEYS) == [
        ("raw.export_account_plays", "user_id, end_time, ms_played, item_key, occurrence"),
        ("raw.export_extended_plays", "user_id, ts, ms_played, item_key, occurrence"),
        ("raw.export_files", "_dlt_load_id, file_number"),
    ]
    assert query(
        database_url,
        "select _dlt_load_id = 'old-load', occurrence, audiobook_name, chapter_name, author_name"
        " from raw.export_account_plays order by 1 desc",
    ) == [(True, 0, None, None, None), (False, 0, "Dune", "Ch. 1", "Herbert")]
    assert query(
        database_url,
        "select source_file, file_kind from raw.export_files order by file_number, _dlt_load_id = 'old-load'",
    ) == [
        ("StreamingHistory_music_0.json", "account_music"),
        (f"my_spotify_data.zip/{ACCOUNT_DIR}/StreamingHistory_music_0.json", "account_music"),
        ("export/Streaming_History_Video_2020.json", "extended_video"),
        ("my history.json", "extended_audio"),
        ("mine.json", "account_music"),  # a renamed account file whose plays name no podcast
    ]


def test_only_files_whose_times_always_grow_skip_the_numbering():
    """A file goes without numbering only when no two rows can share a key: times strictly ascending, also
    from one batch to the next."""
    import pyarrow as pa

    from pipelines.export.tracking import AscendingTimes

    def batch(*times: str) -> pa.RecordBatch:
        return pa.RecordBatch.from_pydict({"ts": pa.array(times, pa.string())})

    def ascending(*batches: pa.RecordBatch) -> bool:
        times = AscendingTimes("ts")
        for each in batches:
            times.add(each)
        return times.strictly_ascending

    a, b, c = "2024-03-01T12:00:00Z", "2024-03-01T12:00:01Z", "2024-03-01T12:00:02Z"
    assert ascending(batch(a, b), batch(c))
    assert ascending(batch(a), batch(), batch(b))
    assert not ascending(batch(a, a))  # the same second twice
    assert not ascending(batch(a, b), batch(b, c))  # across two batches
    assert not ascending(batch(b, a))  # out of order: whether keys repeat is not known
    assert not ascending(batch(a, c), batch(b), batch(c + "x"))  # once not ascending, never again


def test_transform_migrates_an_earlier_version_s_tables_before_dbt_reads_them(database_url, tmp_path):
    """A listener who upgrades and does not import again: the next build must not fail on missing columns."""
    _old_layout(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "DATABASE_URL"))}
    env.update(DATABASE_URL=str(database_url), DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path))

    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "transform"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert query(database_url, PRIMARY_KEYS)[0] == (
        "raw.export_account_plays",
        "user_id, end_time, ms_played, item_key, occurrence",
    )
    assert query(database_url, "select count(*), count(*) filter (where source = 'export') from analytics.plays") == [
        (1, 1)
    ]
