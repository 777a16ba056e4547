"""Find the streaming-history files in what the user points at: the export's `.zip`, a folder, or JSON files.

Spotify's zip holds much more than listening history (playlists, library, ...); only the streaming-history
files are read, the rest is listed as skipped. A file is known by its name, as Spotify names it; a JSON file
with another name (one the user renamed, say `my history (1).json`) by its first bytes. Files are opened
lazily, one at a time, and read as streams.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipelines.errors import ConfigError
from pipelines.export.formats import ExportFormat, FileKind, format_of_kind, kind_of, sniff_kind
from pipelines.export.problems import ExportFileError
from pipelines.export.text_encoding import utf8_head
from pipelines.export.zip_members import open_member

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class ExportFile:
    """One streaming-history file, in a zip or on disk."""

    name: str  # as shown to the user and logged in raw.export_files: the zip's name / the member's path
    size: int  # uncompressed bytes, for the progress bar
    kind: FileKind
    opener: Callable[[], AbstractContextManager[IO[bytes]]] = field(repr=False, compare=False)

    @property
    def export_format(self) -> ExportFormat:
        return format_of_kind(self.kind)

    def open(self) -> AbstractContextManager[IO[bytes]]:
        """A binary stream of the file's JSON, as a context manager."""
        return self.opener()


@dataclass
class Discovery:
    """What `discover` found."""

    files: list[ExportFile]
    skipped: list[str]  # other files of the export, not streaming history
    rejected: list[ExportFileError] = field(default_factory=list)  # unreadable zips and files


def discover(paths: Iterable[Path]) -> Discovery:
    """The streaming-history files under `paths`, sorted by name within each path.

    A zip that cannot be opened, or a file that cannot be read or that the user named but is not streaming
    history, is listed in `rejected`, for the caller to stop or skip it.

    Raises:
        ConfigError: a path does not exist, or nothing at all was found (no streaming-history file, none rejected).
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
    if not found.files and not found.rejected:
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
        _add(found, shown, path.name, lambda path=path: path.stat().st_size, _file_opener(path), named=False)


def _from_explicit_file(path: Path, found: Discovery) -> None:
    """A file the user named: known by name, else by content, else rejected clearly."""
    _add(found, path.name, path.name, lambda: path.stat().st_size, _file_opener(path), named=True)


def _from_zip(path: Path, shown: str, found: Discovery) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted((info for info in archive.infolist() if not info.is_dir()), key=lambda info: info.filename)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        found.rejected.append(
            ExportFileError(shown, None, f"not a readable zip file ({exc}); download the export again")
        )
        return
    for info in members:
        _add(
            found,
            f"{shown}/{info.filename}",
            Path(info.filename).name,
            lambda info=info: info.file_size,
            _member_opener(path, info.filename),
            named=False,
        )


def _add(
    found: Discovery,
    shown: str,
    base_name: str,
    size: Callable[[], int],
    opener: Callable[[], AbstractContextManager[IO[bytes]]],
    *,
    named: bool,
) -> None:
    """Add a file by its kind: by name, else (a JSON file, or one the user named) by its first bytes.

    `named`: the user named this file, so one that is not streaming history is an error, not another file.
    """
    kind = kind_of(base_name)
    try:
        if kind is None and (named or base_name.lower().endswith(".json")):
            with opener() as stream:
                kind = sniff_kind(utf8_head(stream.read(SNIFF_BYTES)))
        if kind is not None:
            found.files.append(ExportFile(shown, size(), kind, opener))
            return
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
        found.rejected.append(ExportFileError(shown, None, f"cannot be read ({_reason(exc)})"))
        return
    if named:
        found.rejected.append(
            ExportFileError(
                shown,
                None,
                "not a Spotify streaming history file (expected a list of plays with ts and ms_played, "
                "or endTime and msPlayed)",
            )
        )
    else:
        found.skipped.append(shown)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _file_opener(path: Path) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: path.open("rb")


def _member_opener(archive_path: Path, member: str) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: open_member(archive_path, member)
