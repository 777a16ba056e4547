"""Decode a JSON array of flat objects in bounded chunks, never holding the whole file.

Spotify's history files are one JSON array of flat objects (no nested objects or arrays). The reader cuts the
byte stream after a `}` that ends an object, so each chunk is a complete, smaller JSON array that a fast
decoder (msgspec) parses and type-checks in one call; no Python loop ever visits a character. Whether a `}`
lies inside a string follows from the parity of the unescaped quotes before it, which `bytes.count` computes
at memory speed; that exact check is only needed when the cheap guess (the last `}`) fails to decode.
Memory is bounded by the chunk size, whatever the size of the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

CHUNK_BYTES = 4 << 20
_WHITESPACE = b" \t\r\n"
_LEADING = re.compile(rb"[ \t\r\n]*")
_BOM = b"\xef\xbb\xbf"


class JsonArrayError(ValueError):
    """The byte stream is not a JSON array of objects; the message says what was found instead."""


def unescaped_quotes(data: bytes, end: int) -> int:
    """How many `"` in `data[:end]` are not escaped, i.e. not preceded by an odd run of backslashes."""
    total = data.count(b'"', 0, end)
    # Quotes preceded by at least k backslashes, k = 1, 2, ...; alternating sums give the odd runs.
    escaped, sign, run = 0, 1, 1
    while True:
        preceded = data.count(b"\\" * run + b'"', 0, end)
        if not preceded:
            break
        escaped += sign * preceded
        sign, run = -sign, run + 1
    return total - escaped


def last_object_end(data: bytes) -> int:
    """Index of the last `}` outside strings in `data` (which starts outside a string), or -1."""
    end = len(data)
    while True:
        position = data.rfind(b"}", 0, end)
        if position < 0 or unescaped_quotes(data, position) % 2 == 0:
            return position
        end = position


def iter_decoded(
    read: Callable[[int], bytes], decoder: msgspec.json.Decoder, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[list[Any]]:
    """Decode the JSON array read from `read` chunk by chunk, each chunk about `chunk_bytes` of whole objects.

    Each chunk is cut optimistically after the last `}` of the bytes read. A cut inside a string always leaves
    that string unterminated, so the decoder rejects it; only then is the cut placed exactly (quote parity)
    and the chunk decoded again. A file that is truncated, or has bytes after its closing `]`, fails in the
    decoder with the position of the problem.

    Raises:
        JsonArrayError: the stream is empty, not JSON, or a JSON object rather than an array.
        msgspec.DecodeError, msgspec.ValidationError: a chunk is not valid JSON or not of the decoder's type;
            the `$[i]` in the message is the index within the chunk (chunks start at row boundaries).
    """
    tail = _array_body(read, chunk_bytes)
    first = True
    while True:
        block = read(chunk_bytes)
        if not block:
            # What follows the last object: ideally just `]`.
            yield decoder.decode(_as_array(tail, len(tail), first, close=False))
            return
        data = tail + block
        cut = data.rfind(b"}")
        if cut < 0:
            tail = data  # an object larger than a chunk: read on
            continue
        try:
            items = decoder.decode(_as_array(data, cut + 1, first))
        except msgspec.DecodeError:
            exact = last_object_end(data)
            if exact == cut:
                raise
            if exact < 0:
                tail = data
                continue
            cut = exact
            items = decoder.decode(_as_array(data, cut + 1, first))
        tail = data[cut + 1 :]
        first = False
        yield items


def _array_body(read: Callable[[int], bytes], chunk_bytes: int) -> bytes:
    """The first bytes after the array's opening `[`."""
    start = read(chunk_bytes).lstrip(_WHITESPACE)
    if start.startswith(_BOM):
        start = start[len(_BOM) :].lstrip(_WHITESPACE)
    while not start:
        block = read(chunk_bytes)
        if not block:
            raise JsonArrayError("the file is empty")
        start = block.lstrip(_WHITESPACE)
    if start[:1] == b"{":
        raise JsonArrayError("it holds a single JSON object, not a list of plays")
    if start[:1] != b"[":
        raise JsonArrayError("it is not JSON (a list of plays starts with '[')")
    return start[1:]


def _as_array(data: bytes, end: int, first: bool, close: bool = True) -> bytes:
    """`data[:end]` as a JSON array: `[`, the objects without the comma that separated them from the previous
    chunk (exactly one, unless first), and `]` when `close`. One copy of the bytes, none for stripping."""
    start = _LEADING.match(data, 0, end).end()  # type: ignore[union-attr]
    if not first and data[start : start + 1] == b",":
        start = _LEADING.match(data, start + 1, end).end()  # type: ignore[union-attr]
    return b"".join((b"[", memoryview(data)[start:end], b"]" if close else b""))
