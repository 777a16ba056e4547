"""Files an editor saved again: UTF-8 with a BOM, UTF-16 either way round, CRLF line ends are read exactly;
anything else is refused in one line that names the file and the first byte that is not text."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from pipelines.export.problems import ImportRejectedError
from tests.conftest import query
from tests.export.conftest import (
    ACCOUNT_DIR,
    AWKWARD_TRACK_NAME,
    EXTENDED_DIR,
    T0,
    sample_account_plays,
    sample_extended_plays,
    track_play,
    write_encoded,
    write_json,
    write_zip,
)
from tests.export.test_import import EXTENDED_ROWS

NAMES = [
    "Song 1",
    "Song 2",
    "Épisode 42: naïve café ☕",
    "Kapitel 1",
    None,
    AWKWARD_TRACK_NAME,  # a tab, CR LF, quotes, backslashes and a character outside the BMP (🎧)
]
SAVED_AS = {
    "utf-8 with BOM": ("utf-8", codecs.BOM_UTF8, "\n"),
    "utf-8 with CRLF": ("utf-8", b"", "\r\n"),
    "utf-16 LE": ("utf-16-le", codecs.BOM_UTF16_LE, "\n"),
    "utf-16 BE": ("utf-16-be", codecs.BOM_UTF16_BE, "\n"),
    "utf-16 LE with CRLF": ("utf-16-le", codecs.BOM_UTF16_LE, "\r\n"),
    "utf-16 BE with CRLF": ("utf-16-be", codecs.BOM_UTF16_BE, "\r\n"),
    "utf-16 LE without BOM": ("utf-16-le", b"", "\r\n"),
}


def names_stored(database_url) -> list[str | None]:
    return [row[3] or row[5] or row[6] for row in query(database_url, EXTENDED_ROWS)]


@pytest.mark.parametrize("saved_as", SAVED_AS)
def test_a_file_saved_again_by_an_editor_reads_exactly(saved_as, import_into, database_url, tmp_path):
    encoding, bom, newline = SAVED_AS[saved_as]
    played = write_encoded(
        tmp_path / "Streaming_History_Audio_2024_0.json", sample_extended_plays(), encoding, bom=bom, newline=newline
    )

    summary = import_into(played)

    assert (summary.rows_read, summary.rows_loaded, summary.rejected) == (6, 6, [])
    assert names_stored(database_url) == NAMES


def test_utf16_members_of_the_zip_read_exactly(import_into, database_url, tmp_path):
    extended = codecs.BOM_UTF16_BE + json.dumps(sample_extended_plays(), indent=4, ensure_ascii=False).encode(
        "utf-16-be"
    )
    account = codecs.BOM_UTF16_LE + json.dumps(sample_account_plays(), ensure_ascii=False).encode("utf-16-le")
    archive = write_zip(
        tmp_path / "my_spotify_data.zip",
        {
            f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": extended,
            f"{ACCOUNT_DIR}/StreamingHistory_music_0.json": account,
        },
    )

    summary = import_into(archive)

    assert summary.loaded_by_table == {"export_extended_plays": 6, "export_account_plays": 2}
    assert names_stored(database_url) == NAMES
    assert query(database_url, "select artist_name from raw.export_account_plays order by end_time") == [
        ("Artist 1",),
        ("Nils Frähm",),
    ]


@pytest.mark.parametrize("bom", [codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE], ids=["LE", "BE"])
def test_utf16_is_transcoded_across_any_block_boundary(bom, tmp_path):
    """Small chunks cut UTF-16 code units and surrogate pairs apart: the rows must not change."""
    from pipelines.export.inputs import discover
    from pipelines.export.reader import read_batches

    plays = [track_play(T0, n, master_metadata_track_name=f"🎧 }}, {{ é \\ {n}") for n in range(200)]
    encoding = "utf-16-le" if bom == codecs.BOM_UTF16_LE else "utf-16-be"
    utf16 = write_encoded(tmp_path / "a" / "Streaming_History_Audio_2024_0.json", plays, encoding, bom=bom)
    utf8 = write_json(tmp_path / "b" / "Streaming_History_Audio_2024_0.json", plays)
    [utf16_file], [utf8_file] = discover([utf16]).files, discover([utf8]).files

    def rows(export_file, chunk_bytes: int) -> list[dict]:
        return [
            row for batch in read_batches(export_file, "u", False, chunk_bytes=chunk_bytes) for row in batch.to_pylist()
        ]

    assert rows(utf16_file, 257) == rows(utf16_file, 1 << 22) == rows(utf8_file, 1 << 22)
    assert [row["master_metadata_track_name"] for row in rows(utf16_file, 33)][-1] == "🎧 }, { é \\ 199"


def cp1252_plays() -> list[dict]:
    """Plays whose first character outside ASCII is the "é" of "Café" (0xE9 in Windows-1252)."""
    return [
        track_play(T0, 1),
        track_play(T0, 2, master_metadata_track_name="Café del Mar", master_metadata_album_artist_name="Björk"),
    ]


def test_a_file_saved_as_windows_1252_is_refused_in_one_line_naming_file_and_byte(import_into, database_url, tmp_path):
    played = write_encoded(tmp_path / "export" / "Streaming_History_Audio_2024_0.json", cp1252_plays(), "cp1252")
    offset = played.read_bytes().index(b"\xe9")

    with pytest.raises(ImportRejectedError) as raised:
        import_into(tmp_path / "export")

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"export/Streaming_History_Audio_2024_0.json: not UTF-8 or UTF-16 text (byte 0xE9 at offset {offset}); "
        "re-download the export or save the file as UTF-8."
    )
    assert query(database_url, "select count(*) from raw.export_extended_plays") == [(0,)]


def test_skip_invalid_files_imports_the_files_beside_one_in_windows_1252(import_into, database_url, tmp_path):
    folder = tmp_path / "export"
    write_encoded(folder / "Streaming_History_Audio_2023_0.json", cp1252_plays(), "cp1252")
    write_encoded(
        folder / "Streaming_History_Audio_2024_0.json", sample_extended_plays(), "utf-16-le", bom=codecs.BOM_UTF16_LE
    )
    write_json(folder / "StreamingHistory_music_0.json", sample_account_plays())

    summary = import_into(folder, skip_invalid_files=True)

    [rejected] = summary.rejected
    assert (rejected.file, rejected.row) == ("export/Streaming_History_Audio_2023_0.json", None)
    assert rejected.problem.startswith("not UTF-8 or UTF-16 text (byte 0xE9 at offset ")
    assert (summary.files_read, summary.rows_read, summary.rows_loaded) == (3, 8, 8)
    assert summary.loaded_by_table == {"export_extended_plays": 6, "export_account_plays": 2}
    assert query(database_url, "select count(*) from raw.export_files") == [(2,)]


def _refused(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """Name -> (the file's bytes, what the one line says)."""
    utf16 = codecs.BOM_UTF16_LE + json.dumps(sample_extended_plays()).encode("utf-16-le")
    latin1_in_zip = json.dumps(cp1252_plays(), ensure_ascii=False).encode("latin-1")
    e_acute = latin1_in_zip.index(b"\xe9")
    return {
        "utf-16 cut in the middle of a character": (
            utf16[:-1],
            "not UTF-8 or UTF-16 text (it ends in the middle of a UTF-16 character (truncated?))",
        ),
        "utf-32": (
            codecs.BOM_UTF32_LE + json.dumps(sample_extended_plays()).encode("utf-32-le"),
            "not UTF-8 or UTF-16 text (it is UTF-32)",
        ),
        "latin-1": (latin1_in_zip, f"not UTF-8 or UTF-16 text (byte 0xE9 at offset {e_acute})"),
    }


@pytest.mark.parametrize("case", ["utf-16 cut in the middle of a character", "utf-32", "latin-1"])
def test_other_encodings_are_refused_naming_the_file(case, import_into, tmp_path):
    data, said = _refused(tmp_path)[case]
    archive = write_zip(tmp_path / "my_spotify_data.zip", {f"{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json": data})

    with pytest.raises(ImportRejectedError) as raised:
        import_into(archive)

    message = str(raised.value)
    assert message.startswith(f"my_spotify_data.zip/{EXTENDED_DIR}/Streaming_History_Audio_2024_0.json: {said}")
    assert "\n" not in message
