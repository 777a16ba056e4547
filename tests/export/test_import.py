"""`import-history` against a real PostgreSQL: both formats, privacy, idempotency and bad input."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.export.importer import resolve_user_id
from pipelines.export.problems import ExportFileError, ImportRejectedError
from tests.conftest import query
from tests.export.conftest import (
    AWKWARD_TRACK_NAME,
    EXTENDED_DIR,
    T0,
    USER,
    export_zip,
    sample_extended_plays,
    track_play,
    write_json,
    write_zip,
)

EXTENDED_ROWS = "select user_id, ts, ms_played, master_metadata_track_name, spotify_track_uri, episode_name, audiobook_chapter_title, reason_end, skipped, shuffle, ip_addr from raw.export_extended_plays order by ts"  # noqa: E501


def raw_snapshot(database) -> dict[str, list[tuple]]:
    """Every stored export row, load ids included: what "nothing changed" is checked against."""
    return {
        table: query(database, f"select * from raw.{table} order by 1, 2, 3, 4")  # noqa: S608 - fixed names
        for table in ("export_extended_plays", "export_account_plays", "export_files")
    }


def test_zip_import_loads_every_play_of_both_formats_and_keeps_no_network_data(import_into, database_url, tmp_path):
    summary = import_into(export_zip(tmp_path))

    assert (summary.files_read, summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (2, 8, 8, 0)
    assert summary.loaded_by_table == {"export_extended_plays": 6, "export_account_plays": 2}
    assert sorted(Path(name).name for name in summary.files_skipped) == [
        "Playlist1.json",
        "ReadMeFirst_ExtendedStreamingHistory.pdf",
    ]
    rows = query(database_url, EXTENDED_ROWS)
    assert [row[3] or row[5] or row[6] for row in rows] == [
        "Song 1",
        "Song 2",
        "Épisode 42: naïve café ☕",
        "Kapitel 1",
        None,  # a play Spotify recorded without any metadata is kept, not dropped
        AWKWARD_TRACK_NAME,
    ]
    assert rows[1][2:4] == (12_000, "Song 2") and rows[1][7:9] == ("fwdbtn", True)  # a play under 30 s
    assert {row[0] for row in rows} == {USER}
    assert {row[10] for row in rows} == {None}  # IP addresses are not stored by default
    assert query(database_url, "select source_file from raw.export_files order by 1") == [
        ("my_spotify_data.zip/Spotify Account Data/StreamingHistory_music_0.json",),
        (f"my_spotify_data.zip/{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json",),
    ]
    assert query(
        database_url, "select end_time, artist_name, track_name, ms_played from raw.export_account_plays order by 1"
    )[1][1:] == ("Nils Frähm", "Says", 248_000)


def test_network_data_is_stored_only_when_asked(import_into, database_url, tmp_path):
    import_into(export_zip(tmp_path), include_network_data=True)

    assert query(database_url, "select distinct ip_addr from raw.export_extended_plays") == [("192.0.2.10",)]


def test_reimport_of_the_same_export_changes_nothing(import_into, database_url, tmp_path):
    archive = export_zip(tmp_path)
    import_into(archive)
    before = raw_snapshot(database_url)
    folder = tmp_path / "extracted"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)

    again = import_into(folder)  # the same plays, now from the extracted folder

    assert (again.rows_read, again.rows_loaded, again.duplicates_skipped) == (8, 0, 8)
    after = raw_snapshot(database_url)
    assert after["export_extended_plays"] == before["export_extended_plays"]
    assert after["export_account_plays"] == before["export_account_plays"]


def test_the_same_file_twice_in_one_import_is_stored_once(import_into, database_url, tmp_path):
    played = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", sample_extended_plays())
    copy = shutil.copy(played, tmp_path / "Streaming_History_Audio_2024_1.json")

    summary = import_into(played, Path(copy))

    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (12, 6, 6)
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(6,)]


def test_a_row_twice_in_one_file_is_kept_twice(import_into, database_url, tmp_path):
    """Real exports hold rows identical in every field (two plays of an offline batch). Nothing stored yet, so
    the file is copied straight into the keyed table: the second row breaks the key, the file's copy is undone
    and the file is read again through the scratch table, which numbers the two rows 0 and 1."""
    plays = sample_extended_plays()
    played = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", [*plays, plays[3]])

    summary = import_into(played)

    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (7, 7, 0)
    assert summary.files_reread == 1
    assert query(
        database_url, "select count(*), count(distinct ts), max(occurrence) from raw.export_extended_plays"
    ) == [(7, 6, 1)]


def test_a_newer_export_adds_only_its_new_plays(import_into, database_url, tmp_path):
    first = [track_play(T0 + timedelta(minutes=n), n) for n in range(0, 40)]
    newer = [track_play(T0 + timedelta(minutes=n), n) for n in range(20, 60)]  # the stored half, then new
    import_into(write_json(tmp_path / "old" / "Streaming_History_Audio_2024_0.json", first))

    summary = import_into(write_json(tmp_path / "new" / "Streaming_History_Audio_2024_0.json", newer))

    assert (summary.rows_read, summary.rows_loaded, summary.duplicates_skipped) == (40, 20, 20)
    assert summary.files_reread == 0  # its first plays are in a stored range: the scratch table from the start
    assert query(database_url, "select count(*), count(distinct ts) from raw.export_extended_plays") == [(60, 60)]


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2], ids=["stored", "deflated", "bzip2"]
)
def test_every_zip_compression_reads_the_same_plays(compression, import_into, database_url, tmp_path):
    data = json.dumps(sample_extended_plays(), indent=2).encode()
    archive = write_zip(
        tmp_path / "export.zip", {f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": data}, compression
    )

    summary = import_into(archive)

    assert summary.rows_loaded == 6
    assert [row[3] or row[5] or row[6] for row in query(database_url, EXTENDED_ROWS)][-1] == AWKWARD_TRACK_NAME


def test_a_large_file_is_read_in_chunks_with_the_same_result(database_url, tmp_path):
    """Memory stays flat: a file is decoded chunk by chunk; tiny chunks must not change a single row."""
    from pipelines.export.inputs import discover
    from pipelines.export.reader import read_batches

    plays = [track_play(T0, n, master_metadata_track_name=f'}}, {{ tricky \\" {n}') for n in range(300)]
    path = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", plays, indent=None)
    [export_file] = discover([path]).files

    chunked = [b.to_pylist() for b in read_batches(export_file, USER, False, chunk_bytes=257)]
    whole = [b.to_pylist() for b in read_batches(export_file, USER, False, chunk_bytes=1 << 22)]

    assert len(chunked) > 10
    assert [row for batch in chunked for row in batch] == [row for batch in whole for row in batch]
    assert [row["master_metadata_track_name"] for batch in chunked for row in batch] == [
        f'}}, {{ tricky \\" {n}' for n in range(300)
    ]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[Path], str, str]]:
    """Name -> (paths, the file the error must name, what it must say)."""
    good = json.dumps(sample_extended_plays(), indent=2).encode()
    broken_member = write_zip(tmp_path / "flipped.zip", {f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": good})
    data = bytearray(broken_member.read_bytes())
    data[60] ^= 0xFF  # inside the compressed member: inflating it fails or its CRC does not match
    broken_member.write_bytes(bytes(data))
    broken_data = write_zip(tmp_path / "bitrot.zip", {f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": good})
    with zipfile.ZipFile(broken_data) as opened:
        [info] = opened.infolist()
    data = bytearray(broken_data.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF  # mid-stream
    broken_data.write_bytes(bytes(data))
    invalid_rows = sample_extended_plays()
    invalid_rows[2]["ms_played"] = "a while"
    bad_time = sample_extended_plays()
    bad_time[4]["ts"] = "yesterday"
    missing = sample_extended_plays()
    del missing[1]["ts"]
    return {
        "corrupt zip": (
            [(tmp_path / "my_spotify_data.zip")],
            "my_spotify_data.zip",
            "not a readable zip file",
        ),
        "corrupt zip member": ([broken_member], "Streaming_History_Audio_2024_0.json", "corrupt"),
        "corrupt compressed data": ([broken_data], "Streaming_History_Audio_2024_0.json", "corrupt"),
        "non-Spotify JSON": (
            [write_json(tmp_path / "notes.json", {"todo": ["milk"]})],  # type: ignore[arg-type]
            "notes.json",
            "not a Spotify streaming history file",
        ),
        "non-Spotify rows": (
            [write_json(tmp_path / "Streaming_History_Audio_2020_0.json", [{"name": "not a play"}])],
            "Streaming_History_Audio_2020_0.json, row 1",
            "missing required field `ts`",
        ),
        "truncated file": (
            [_truncated(tmp_path / "Streaming_History_Audio_2021_0.json", good)],
            "Streaming_History_Audio_2021_0.json",
            "truncated",
        ),
        "invalid field": (
            [write_json(tmp_path / "Streaming_History_Audio_2022_0.json", invalid_rows)],
            "Streaming_History_Audio_2022_0.json, row 3",
            "field `ms_played`: Expected `int`, got `str`",
        ),
        "invalid time": (
            [write_json(tmp_path / "Streaming_History_Audio_2023_0.json", bad_time)],
            "Streaming_History_Audio_2023_0.json, row 5",
            "'yesterday' is not a UTC time",
        ),
        "missing field": (
            [write_json(tmp_path / "Streaming_History_Audio_2025_0.json", missing)],
            "Streaming_History_Audio_2025_0.json, row 2",
            "missing required field `ts`",
        ),
    }


def _truncated(path: Path, data: bytes) -> Path:
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


BAD_INPUTS = [
    "corrupt zip",
    "corrupt zip member",
    "corrupt compressed data",
    "non-Spotify JSON",
    "non-Spotify rows",
    "truncated file",
    "invalid field",
    "invalid time",
    "missing field",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_rejected_by_file_and_row_and_changes_nothing(case, import_into, database_url, tmp_path):
    stored = tmp_path / "stored"
    stored.mkdir()
    import_into(export_zip(stored))
    before = raw_snapshot(database_url)
    (tmp_path / "my_spotify_data.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    paths, file_named, problem = _bad_inputs(tmp_path)[case]
    # A good file beside the bad one: it must not be loaded either.
    good_too = write_json(tmp_path / "other" / "Streaming_History_Audio_2019_0.json", [track_play(T0, 99)])

    with pytest.raises(ImportRejectedError) as raised:
        import_into(*paths, good_too)

    message = str(raised.value)
    assert file_named in message and problem in message, message
    assert "Nothing was imported" in message
    assert raw_snapshot(database_url) == before


def test_skip_invalid_files_imports_the_valid_ones_and_reports_the_rest(import_into, database_url, tmp_path):
    bad = sample_extended_plays()
    bad[0]["ms_played"] = -5
    write_json(tmp_path / "export" / "Streaming_History_Audio_2022_0.json", bad)
    write_json(tmp_path / "export" / "Streaming_History_Audio_2023_0.json", [track_play(T0, 7)])

    summary = import_into(tmp_path / "export", skip_invalid_files=True)

    [rejected] = summary.rejected
    assert isinstance(rejected, ExportFileError)
    assert (rejected.file, rejected.row) == ("export/Streaming_History_Audio_2022_0.json", 1)
    assert "is negative" in rejected.problem
    assert (summary.rows_read, summary.rows_loaded) == (1, 1)
    assert query(database_url, "select master_metadata_track_name from raw.export_extended_plays") == [("Song 7",)]


def test_the_user_defaults_to_the_only_api_user_and_is_never_guessed(database_url):
    with pytest.raises(ConfigError, match="pass --user-id"):
        resolve_user_id(database_url, None)  # no API plays yet
    query(database_url, "create schema raw; create table raw.recently_played (user_id text, played_at timestamptz)")
    query(database_url, "insert into raw.recently_played values ('alice', now())")
    assert resolve_user_id(database_url, None) == "alice"
    assert resolve_user_id(database_url, "bob") == "bob"
    query(database_url, "insert into raw.recently_played values ('bob', now())")
    with pytest.raises(ConfigError, match=r"several users \(alice, bob\)"):
        resolve_user_id(database_url, None)
