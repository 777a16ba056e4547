"""Find the streaming-history files in what the user points at: the export's `.zip`, a folder, or JSON files.

Spotify's zip holds much more than listening history (playlists, library, ...); only the streaming-history
files are read, the rest is listed as skipped. Files are opened lazily, one at a time, and read as streams.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipelines.errors import ConfigError
from pipelines.export.formats import ExportFormat, format_of, sniff_format
from pipelines.export.problems import ExportFileError
from pipelines.export.zip_members import open_member

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class ExportFile:
    """One streaming-history file, in a zip or on disk."""

    name: str  # as shown to the user and logged in raw.export_files: the zip's name / the member's path
    size: int  # uncompressed bytes, for the progress bar
    export_format: ExportFormat
    opener: Callable[[], AbstractContextManager[IO[bytes]]] = field(repr=False, compare=False)

    def open(self) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of the file's JSON, as a context manager."""
        return self.opener()


@dataclass
class Discovery:
    """What `discover` found."""

    files: list[ExportFile]
    skipped: list[str]  # other files of the export, not streaming history


def discover(paths: Iterable[Path]) -> Discovery:
    """The streaming-history files under `paths`, sorted by name within each path.

    Raises:
        ConfigError: a path does not exist, or no streaming-history file was found at all.
        ExportFileError: a zip cannot be opened (not a zip, or corrupt).
    """
    found = Discovery(files=[], skipped=[])
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path} does not exist: pass the export's .zip, its extracted folder, or JSON files")
        if path.is_dir():
            _from_folder(path, found)
        elif path.suffix.lower() == ".zip":
            _from_zip(path, path.name, found)
        else:
            _from_explicit_file(path, found)
    if not found.files:
        raise ConfigError(
            "no streaming history found in "
            + ", ".join(str(p) for p in paths)
            + ": expected Streaming_History_Audio_*.json, endsong_*.json or StreamingHistory*.json files "
            "(in the export's .zip or its folder)"
        )
    return found


def _from_folder(folder: Path, found: Discovery) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        shown = f"{folder.name}/{path.relative_to(folder).as_posix()}"
        if path.suffix.lower() == ".zip":
            _from_zip(path, shown, found)
            continue
        export_format = format_of(path.name)
        if export_format is None:
            found.skipped.append(shown)
            continue
        found.files.append(ExportFile(shown, path.stat().st_size, export_format, _file_opener(path)))


def _from_explicit_file(path: Path, found: Discovery) -> None:
    """A file the user named: trusted by name, else by content, else rejected clearly."""
    export_format = format_of(path.name)
    if export_format is None:
        with path.open("rb") as stream:
            export_format = sniff_format(stream.read(SNIFF_BYTES))
    if export_format is None:
        raise ExportFileError(
            path.name,
            None,
            "not a Spotify streaming history file (expected a list of plays with ts and ms_played, "
            "or endTime and msPlayed)",
        )
    found.files.append(ExportFile(path.name, path.stat().st_size, export_format, _file_opener(path)))


def _from_zip(path: Path, shown: str, found: Discovery) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted((info for info in archive.infolist() if not info.is_dir()), key=lambda info: info.filename)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ExportFileError(shown, None, f"not a readable zip file ({exc}); download the export again") from None
    for info in members:
        member_shown = f"{shown}/{info.filename}"
        export_format = format_of(Path(info.filename).name)
        if export_format is None:
            found.skipped.append(member_shown)
            continue
        found.files.append(ExportFile(member_shown, info.file_size, export_format, _member_opener(path, info.filename)))


def _file_opener(path: Path) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


def _member_opener(archive_path: Path, member: str) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: open_member(archive_path, member)
