"""The encodings an export file may come in: UTF-8 as Spotify writes it, or what an editor saved it as.

Spotify writes UTF-8 without a byte order mark. A file opened and saved again by an editor may come back as
UTF-8 with a BOM, or as UTF-16 (Windows' "Unicode"), little or big endian. A UTF-8 stream passes through
untouched (only its BOM is dropped), so the reader's fast path does no extra work per byte; UTF-16 is
transcoded to UTF-8 block by block as it is read, never held whole.

Any other encoding (a file re-saved as Windows-1252, where "é" is the byte 0xE9) is not valid UTF-8. Checking
every byte up front would cost the fast path a pass over the file, so that is left to the JSON decoder, which
checks the strings it decodes; `first_invalid_utf8` then finds the byte for the error message.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

UTF8_BOM = codecs.BOM_UTF8
_SCAN_BYTES = 1 << 20
_UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
# A JSON text starts with an ASCII character (`[` or white space): in UTF-16 one of its two bytes is zero.
_DETECT_BYTES = 4


class EncodingProblem(ValueError):
    """The bytes are not text in an encoding the import reads; `detail` says what was found."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def invalid_byte(offset: int, byte: int) -> EncodingProblem:
    """The problem of a byte that is not valid where it stands."""
    return EncodingProblem(f"byte 0x{byte:02X} at offset {offset}")


class Utf8Reader:
    """The text of the stream that `read` reads, in UTF-8 without a BOM, read with `read(size)`."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._next: Callable[[int], bytes] = self._first_read  # what `read` does: depends on the first bytes
        self._decoder: codecs.IncrementalDecoder | None = None
        self._consumed = 0  # bytes of the stream given to the decoder so far

    def read(self, size: int) -> bytes:
        """Up to about `size` bytes of UTF-8 (UTF-16 grows or shrinks on the way); empty at the end.

        Raises:
            EncodingProblem: the stream is UTF-32, or UTF-16 with a byte sequence that is not a character.
        """
        return self._next(size)

    def _first_read(self, size: int) -> bytes:
        block = self._read(size)
        while 0 < len(block) < _DETECT_BYTES and (more := self._read(size)):
            block += more
        if block.startswith(_UTF32_BOMS):
            raise EncodingProblem("it is UTF-32")
        encoding, bom = _utf16(block)
        if encoding is None:
            self._next = self._read  # UTF-8: the stream's own reads from here on
            return block.removeprefix(UTF8_BOM)
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._consumed = bom
        self._next = self._transcoded_read
        return self._transcode(block[bom:], final=False) or self._transcoded_read(size)

    def _transcoded_read(self, size: int) -> bytes:
        # An empty block means the end to the caller: read on until there is text, or the stream ends.
        while True:
            block = self._read(size)
            text = self._transcode(block, final=not block)
            if text or not block:
                return text

    def _transcode(self, block: bytes, final: bool) -> bytes:
        assert self._decoder is not None
        pending = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            data = pending + block
            if final and exc.end == len(data):
                raise EncodingProblem("it ends in the middle of a UTF-16 character (truncated?)") from None
            raise invalid_byte(self._consumed - len(pending) + exc.start, data[exc.start]) from None
        self._consumed += len(block)
        return text.encode("utf-8")


def _utf16(head: bytes) -> tuple[str | None, int]:
    """(UTF-16 codec, length of its BOM) when `head` starts a UTF-16 text, else (None, 0)."""
    for bom, encoding in _UTF16_BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    if len(head) >= 2 and head[0] == 0 and head[1] != 0:
        return "utf-16-be", 0
    if len(head) >= 2 and head[0] != 0 and head[1] == 0:
        return "utf-16-le", 0
    return None, 0


def utf8_head(head: bytes) -> bytes:
    """The first bytes of a file as UTF-8 without a BOM (for recognising a file by its keys)."""
    if head.startswith(_UTF32_BOMS):
        return b""
    encoding, bom = _utf16(head)
    if encoding is None:
        return head.removeprefix(UTF8_BOM)
    # The head may end in the middle of a character.
    return head[bom:].decode(encoding, errors="ignore").encode("utf-8")


def first_invalid_utf8(read: Callable[[int], bytes]) -> EncodingProblem | None:
    """The first byte of the stream read by `read` that is not valid UTF-8, or None when all are."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # of the block about to be read
    while True:
        block = read(_SCAN_BYTES)
        pending = decoder.getstate()[0]
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            data = pending + block
            return invalid_byte(offset - len(pending) + exc.start, data[exc.start])
        if not block:
            return None
        offset += len(block)
