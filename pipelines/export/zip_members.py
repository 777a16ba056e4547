"""Stream a zip member's bytes with ISA-L's inflate, checked against the member's CRC-32.

An export's history is about 900 bytes of pretty-printed JSON per play, so a ten-year export inflates to about
1 GB. `zipfile` inflates with the system zlib, which on this hardware takes longer than decoding the JSON;
ISA-L (the `isal` package) inflates the same deflate streams about six times faster, and releases the GIL
while it works. Members stored without compression are read as they are; any other method (bzip2, lzma,
encrypted members), which Spotify never uses, falls back to `zipfile`.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from isal import isal_zlib

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's own layout of a local file header
_LOCAL_SIGNATURE = b"PK\003\004"
_READ_BYTES = 1 << 20
_ENCRYPTED = 0x1


class MemberStream:
    """A readable binary stream of one zip member's content (only `read(n)` is needed by the reader)."""

    def __init__(self, archive: BinaryIO, info: zipfile.ZipInfo) -> None:
        self._archive = archive
        self._info = info
        self._remaining = info.compress_size
        self._inflate = isal_zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self._pending = b""  # compressed bytes read but not inflated yet (output is capped per call)
        self._crc = 0
        self._produced = 0
        archive.seek(_data_offset(archive, info))

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (at least one unless the member is exhausted).

        Raises:
            zipfile.BadZipFile: the member's bytes do not match its CRC or length (a corrupt download).
        """
        limit = size if size and size > 0 else 1 << 30
        while True:
            chunk = self._next(limit)
            if chunk:
                self._crc = isal_zlib.crc32(chunk, self._crc)
                self._produced += len(chunk)
                return chunk
            if self._remaining == 0 and not self._pending:
                self._check_end()
                return b""

    def _next(self, limit: int) -> bytes:
        if not self._pending and self._remaining:
            self._pending = self._archive.read(min(_READ_BYTES, self._remaining))
            if not self._pending:
                raise zipfile.BadZipFile(f"{self._info.filename} ends early")
            self._remaining -= len(self._pending)
        if self._inflate is None:
            chunk, self._pending = self._pending[:limit], self._pending[limit:]
            return chunk
        if self._inflate.eof:
            self._pending = b""
            return b""
        try:
            chunk = self._inflate.decompress(self._pending, limit)
        except isal_zlib.error as exc:
            raise zipfile.BadZipFile(f"{self._info.filename}: {exc}") from None
        self._pending = self._inflate.unconsumed_tail
        if not self._pending and not self._remaining and not chunk:
            chunk = self._inflate.flush()
        return chunk

    def _check_end(self) -> None:
        if self._produced != self._info.file_size or self._crc != self._info.CRC:
            raise zipfile.BadZipFile(f"bad CRC-32 or size of {self._info.filename}")


@contextmanager
def open_member(archive_path: Path, member: str) -> Iterator[IO[bytes]]:
    """The content of `member` of the zip at `archive_path`, as a stream."""
    with zipfile.ZipFile(archive_path) as archive:
        info = archive.getinfo(member)
        fast = info.compress_type in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED) and not info.flag_bits & _ENCRYPTED
        if not fast:
            with archive.open(member) as stream:
                yield stream
            return
    with archive_path.open("rb") as raw:
        yield MemberStream(raw, info)  # type: ignore[misc]


def _data_offset(archive: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where the member's compressed bytes start: after its local header, whose extra field may differ from
    the central directory's."""
    archive.seek(info.header_offset)
    header = archive.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"bad local header of {info.filename}")
    fields = _LOCAL_HEADER.unpack(header)
    name_length, extra_length = fields[-2], fields[-1]
    name = archive.read(name_length)
    # As zipfile checks: a local header that names another file means a corrupt archive.
    if name not in (info.orig_filename.encode("utf-8"), info.orig_filename.encode("cp437", "replace")):
        raise zipfile.BadZipFile(f"the local header of {info.filename} names another file")
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
