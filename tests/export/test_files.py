"""Which files an import reads, and what it says about each: kinds, renamed files, other files, empty and
truncated files, and `skip_invalid_files` for every way a file can be rejected."""

from __future__ import annotations

import codecs
import json
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.export.problems import ExportFileError, ImportRejectedError
from tests.conftest import query
from tests.export.conftest import (
    ACCOUNT_DIR,
    EXTENDED_DIR,
    T0,
    account_audiobook,
    account_music,
    account_podcast,
    endsong_play,
    extended_play,
    sample_account_plays,
    sample_extended_plays,
    track_play,
    write_encoded,
    write_json,
    write_zip,
)
from tests.export.test_import import BAD_INPUTS, _bad_inputs

DAY = timedelta(days=1)
OTHER_FILES = {
    "Userdata.json": {"username": "listener-1", "email": "listener@example.org", "country": "DE"},
    "Playlist1.json": {"playlists": [{"name": "Road trip", "lastModifiedDate": "2024-01-01", "items": []}]},
    "Inferences.json": {"inferences": ["1P_Custom_Audiobook_Listeners"]},
    "Payments.json": {"payment_method": "PayPal", "creation_date": "2020-01-01"},
    "SearchQueries.json": [
        {
            "platform": "ANDROID",
            "searchTime": "2024-03-01T12:00:00.000Z[UTC]",
            "searchQuery": "daft",
            "searchInteractionURIs": [],
        }
    ],
}


def video_plays() -> list[dict]:
    return [
        extended_play(
            T0 + DAY + timedelta(minutes=30 * n),
            episode_name=f"Video episode {n}",
            episode_show_name="A video podcast",
            spotify_episode_uri=f"spotify:episode:video{n:016d}",
            ms_played=600_000,
        )
        for n in range(2)
    ]


def podcast_plays() -> list[dict]:
    return [
        account_podcast(T0 + 2 * DAY + timedelta(hours=n), "Le Podcast", f"Épisode {n}", 1_200_000) for n in range(2)
    ]


def audiobook_plays() -> list[dict]:
    return [
        account_audiobook(T0 + 3 * DAY, "Der Zauberberg", "Kapitel 1", "Thomas Mann", 900_000),
        account_audiobook(T0 + 3 * DAY + timedelta(minutes=15), "Der Zauberberg", "Kapitel 2", "Thomas Mann", 850_000),
    ]


def dumped(value: object) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode()


def test_every_kind_of_history_file_is_read_and_logged_and_the_other_files_are_named(
    import_into, database_url, tmp_path
):
    archive = write_zip(
        tmp_path / "my_spotify_data.zip",
        {
            f"{EXTENDED_DIR}/Streaming_History_Audio_2023-2024_0.json": dumped(sample_extended_plays()),
            f"{EXTENDED_DIR}/Streaming_History_Video_2023-2024.json": dumped(video_plays()),
            f"{EXTENDED_DIR}/ReadMeFirst_ExtendedStreamingHistory.pdf": b"%PDF-1.4",
            f"{ACCOUNT_DIR}/StreamingHistory_music_0.json": dumped(sample_account_plays()),
            f"{ACCOUNT_DIR}/StreamingHistory_podcast_0.json": dumped(podcast_plays()),
            f"{ACCOUNT_DIR}/StreamingHistory_audiobook_0.json": dumped(audiobook_plays()),
            f"{ACCOUNT_DIR}/Read Me First.pdf": b"%PDF-1.4",
            **{f"{ACCOUNT_DIR}/{name}": dumped(content) for name, content in OTHER_FILES.items()},
        },
    )

    summary = import_into(archive)

    assert (summary.files_read, summary.rows_read, summary.rows_loaded, summary.rejected) == (5, 14, 14, [])
    assert summary.loaded_by_table == {"export_extended_plays": 8, "export_account_plays": 6}
    assert sorted(Path(name).name for name in summary.files_skipped) == sorted(
        ["ReadMeFirst_ExtendedStreamingHistory.pdf", "Read Me First.pdf", *OTHER_FILES]
    )
    assert query(database_url, "select source_file, file_kind, rows_read from raw.export_files order by 1") == [
        (f"my_spotify_data.zip/{ACCOUNT_DIR}/StreamingHistory_audiobook_0.json", "account_audiobook", 2),
        (f"my_spotify_data.zip/{ACCOUNT_DIR}/StreamingHistory_music_0.json", "account_music", 2),
        (f"my_spotify_data.zip/{ACCOUNT_DIR}/StreamingHistory_podcast_0.json", "account_podcast", 2),
        (f"my_spotify_data.zip/{EXTENDED_DIR}/Streaming_History_Audio_2023-2024_0.json", "extended_audio", 6),
        (f"my_spotify_data.zip/{EXTENDED_DIR}/Streaming_History_Video_2023-2024.json", "extended_video", 2),
    ]
    assert query(
        database_url,
        "select audiobook_name, chapter_name, author_name, ms_played from raw.export_account_plays"
        " where audiobook_name is not null order by end_time",
    ) == [
        ("Der Zauberberg", "Kapitel 1", "Thomas Mann", 900_000),
        ("Der Zauberberg", "Kapitel 2", "Thomas Mann", 850_000),
    ]
    assert query(
        database_url, "select podcast_name, episode_name from raw.export_account_plays where podcast_name is not null"
    ) == [("Le Podcast", "Épisode 0"), ("Le Podcast", "Épisode 1")]


def test_the_legacy_file_names_have_their_kinds(import_into, database_url, tmp_path):
    folder = tmp_path / "MyData"
    write_json(folder / "endsong_0.json", [endsong_play(T0, 1), endsong_play(T0 + DAY, 2)])
    write_json(folder / "StreamingHistory0.json", [account_music(T0 + 2 * DAY, "Artist 1", "Song 1", 200_000)])

    summary = import_into(folder)

    assert summary.rows_loaded == 3
    assert query(database_url, "select source_file, file_kind from raw.export_files order by 1") == [
        ("MyData/StreamingHistory0.json", "account_music"),
        ("MyData/endsong_0.json", "extended_audio"),
    ]


def test_renamed_files_are_recognised_by_their_content_in_a_folder_a_zip_or_named(import_into, database_url, tmp_path):
    folder = tmp_path / "downloads"
    write_json(folder / "my history (1).json", sample_extended_plays())
    write_json(folder / "podcasts.json", podcast_plays())
    # Renamed and saved as UTF-16 by an editor: still known by its keys.
    write_encoded(folder / "books (copy).json", audiobook_plays(), "utf-16-le", bom=codecs.BOM_UTF16_LE)
    write_json(folder / "Userdata.json", OTHER_FILES["Userdata.json"])  # type: ignore[arg-type]
    write_json(folder / "SearchQueries (1).json", OTHER_FILES["SearchQueries.json"])  # type: ignore[arg-type]
    archive = write_zip(
        tmp_path / "my_spotify_data (2).zip",
        {
            "my_spotify_data/history backup.json": dumped(video_plays()),
            "my_spotify_data/music backup.json": dumped(sample_account_plays()),
            "my_spotify_data/Playlist1.json": dumped(OTHER_FILES["Playlist1.json"]),
        },
    )
    named = write_json(tmp_path / "elsewhere" / "spotify.json", [track_play(T0 + 5 * DAY, 77)])

    summary = import_into(folder, archive, named)

    assert (summary.files_read, summary.rows_read, summary.rows_loaded, summary.rejected) == (6, 15, 15, [])
    assert sorted(Path(name).name for name in summary.files_skipped) == [
        "Playlist1.json",
        "SearchQueries (1).json",
        "Userdata.json",
    ]
    assert query(database_url, "select source_file, file_kind, rows_read from raw.export_files order by 1") == [
        ("downloads/books (copy).json", "account_audiobook", 2),
        ("downloads/my history (1).json", "extended_audio", 6),
        ("downloads/podcasts.json", "account_podcast", 2),
        ("my_spotify_data (2).zip/my_spotify_data/history backup.json", "extended_audio", 2),  # video, renamed
        ("my_spotify_data (2).zip/my_spotify_data/music backup.json", "account_music", 2),
        ("spotify.json", "extended_audio", 1),
    ]


def test_an_empty_file_is_a_warning_naming_it_and_nothing_fails(import_into, database_url, tmp_path):
    folder = tmp_path / "export"
    write_json(folder / "Streaming_History_Audio_2024_0.json", sample_extended_plays())
    (folder / "Streaming_History_Video_2024.json").write_text("[]\n")
    (folder / "StreamingHistory_podcast_0.json").write_text("[ \r\n ]")

    summary = import_into(folder)

    assert (summary.files_read, summary.rows_read, summary.rows_loaded, summary.rejected) == (3, 6, 6, [])
    assert summary.warnings == [
        "export/StreamingHistory_podcast_0.json: holds no plays (an empty list), nothing to import",
        "export/Streaming_History_Video_2024.json: holds no plays (an empty list), nothing to import",
    ]
    assert query(database_url, "select source_file from raw.export_files") == [
        ("export/Streaming_History_Audio_2024_0.json",)
    ]


def _cut_inside_row(plays: list[dict], row: int) -> bytes:
    """The plays' JSON, cut in the middle of the 1-based `row`."""
    data = dumped(plays)
    position = data.index(json.dumps(plays[row - 1]["ts"]).encode()) + 8
    return data[:position]


def test_a_truncated_file_names_the_row_that_is_cut_off(import_into, tmp_path):
    played = tmp_path / "Streaming_History_Audio_2024_0.json"
    played.write_bytes(_cut_inside_row(sample_extended_plays(), 4))

    with pytest.raises(ImportRejectedError) as raised:
        import_into(played)

    assert str(raised.value).startswith(
        "Streaming_History_Audio_2024_0.json, row 4: the file ends in the middle of this play (truncated?)"
    )


def test_a_file_without_its_closing_bracket_says_after_which_row_it_ends(import_into, tmp_path):
    played = tmp_path / "Streaming_History_Audio_2024_0.json"
    played.write_bytes(dumped(sample_extended_plays()).rstrip()[:-1])

    with pytest.raises(ImportRejectedError) as raised:
        import_into(played)

    assert str(raised.value).startswith(
        "Streaming_History_Audio_2024_0.json: the file ends after row 6, before its list of plays is closed"
    )


@pytest.mark.parametrize("chunk_bytes", [257, 4096])
def test_the_cut_off_row_is_counted_across_chunks(chunk_bytes, tmp_path):
    from pipelines.export.inputs import discover
    from pipelines.export.reader import read_batches

    plays = [track_play(T0 + timedelta(minutes=n), n) for n in range(300)]
    played = tmp_path / "Streaming_History_Audio_2024_0.json"
    played.write_bytes(_cut_inside_row(plays, 250))
    [export_file] = discover([played]).files

    with pytest.raises(ExportFileError) as raised:
        for _ in read_batches(export_file, "u", False, chunk_bytes=chunk_bytes):
            pass

    assert raised.value.row == 250


SKIPPABLE = [*BAD_INPUTS, "windows-1252", "not a list", "zero bytes"]


@pytest.mark.parametrize("case", SKIPPABLE)
def test_skip_invalid_files_covers_every_rejection(case, import_into, database_url, tmp_path):
    (tmp_path / "my_spotify_data.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    inputs = {name: (paths, file_named) for name, (paths, file_named, _) in _bad_inputs(tmp_path).items()}
    inputs["windows-1252"] = (
        [
            write_encoded(
                tmp_path / "Streaming_History_Audio_2018_0.json",
                [track_play(T0, 5, master_metadata_track_name="Café")],
                "cp1252",
            )
        ],
        "Streaming_History_Audio_2018_0.json",
    )
    inputs["not a list"] = (
        [write_json(tmp_path / "StreamingHistory_music_9.json", {"endTime": "2024-01-01 00:00"})],  # type: ignore[arg-type]
        "StreamingHistory_music_9.json",
    )
    (tmp_path / "Streaming_History_Audio_2017_0.json").write_bytes(b"")
    inputs["zero bytes"] = ([tmp_path / "Streaming_History_Audio_2017_0.json"], "Streaming_History_Audio_2017_0.json")
    paths, file_named = inputs[case]
    good = write_json(tmp_path / "other" / "Streaming_History_Audio_2019_0.json", [track_play(T0, 99)])

    summary = import_into(*paths, good, skip_invalid_files=True)

    [rejected] = summary.rejected
    assert file_named.split(", row")[0] in str(rejected)
    assert (summary.rows_read, summary.rows_loaded) == (1, 1)
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(1,)]
