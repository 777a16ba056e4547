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
from typing import Any, NamedTuple

import msgspec

CHUNK_BYTES = 4 << 20
_WHITESPACE = b" \t\r\n"
_LEADING = re.compile(rb"[ \t\r\n]*")
_BOM = b"\xef\xbb\xbf"
_OPEN, _CLOSE, _COMMA = ord("["), ord("]"), ord(",")
_NUL_ESCAPE = b"\\u0000"


class JsonArrayError(ValueError):
    """The byte stream is not a JSON array of objects; the message says what was found instead."""


class TruncatedArrayError(JsonArrayError):
    """The stream ends inside the array.

    Attributes:
        complete: how many whole objects the last chunk held before the end (rows before it: the caller's).
        inside_object: whether the stream ends inside an object, rather than between two (only `]` missing).
    """

    def __init__(self, complete: int, inside_object: bool) -> None:
        self.complete = complete
        self.inside_object = inside_object
        super().__init__(f"the array ends early, after {complete} whole object(s) of its last chunk")


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


class Chunk(NamedTuple):
    """One decoded chunk of the array."""

    items: list[Any]
    # The chunk's JSON holds an escape sequence (a backslash) somewhere. Only then can a decoded string hold a
    # backslash or a control character: JSON strings cannot hold raw ones.
    has_escapes: bool
    # The chunk's JSON spells a NUL character (`\\u0000`, the only way JSON can hold one) somewhere, maybe.
    may_hold_nul: bool


def iter_decoded(
    read: Callable[[int], bytes], decoder: msgspec.json.Decoder, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """Decode the JSON array read from `read` chunk by chunk, each chunk about `chunk_bytes` of whole objects.

    Each chunk is cut optimistically after the last `}` of the bytes read. A cut inside a string always leaves
    that string unterminated, so the decoder rejects it; only then is the cut placed exactly (quote parity)
    and the chunk decoded again. A file that is truncated raises `TruncatedArrayError`; one with bytes after
    its closing `]` fails in the decoder with the position of the problem.

    The bytes are decoded where they lie in one reused buffer: the `[` that opens the file, or the `,` before
    a later chunk's first object, is turned into `[` and the byte after the cut into `]` for the time of the
    decode. Copying a chunk instead costs as much as inflating it.

    Raises:
        JsonArrayError: the stream is empty, not JSON, or a JSON object rather than an array.
        TruncatedArrayError: the stream ends before the array does (a JsonArrayError).
        msgspec.DecodeError, msgspec.ValidationError: a chunk is not valid JSON or not of the decoder's type;
            the `$[i]` in the message is the index within the chunk (chunks start at row boundaries).
    """
    buffer = bytearray(_array_start(read, chunk_bytes))  # starts with the array's `[`
    first = True
    while True:
        block = read(chunk_bytes)
        if not block:
            # What follows the last object: ideally just `]`.
            rest = bytes(buffer)
            yield Chunk(_decode_last(decoder, _as_array(rest, first)), *_escapes(rest, 0, len(rest)))
            return
        buffer += block
        opener = _LEADING.match(buffer).end()  # type: ignore[union-attr]
        cut = buffer.rfind(b"}")
        if cut < opener:
            continue  # no whole object yet (one larger than a chunk): read on
        if not first and buffer[opener] != _COMMA:
            # After an object, only `,` or the array's `]` (then nothing but whitespace) may follow.
            if buffer[opener] == _CLOSE:
                decoder.decode(_as_array(bytes(buffer), first))  # raises: bytes after the array
            raise msgspec.DecodeError("JSON is malformed: expected ',' or ']' after an object")
        try:
            items = _decode_in_place(decoder, buffer, opener, cut)
        except msgspec.DecodeError:
            exact = last_object_end(bytes(buffer[opener:]))
            if exact < 0:
                continue  # the only `}` were inside a string of an object that goes on
            if opener + exact == cut:
                raise
            cut = opener + exact
            items = _decode_in_place(decoder, buffer, opener, cut)
        yield Chunk(items, *_escapes(buffer, opener, cut + 1))
        del buffer[: cut + 1]
        first = False


def _decode_last(decoder: msgspec.json.Decoder, array: bytes) -> Any:
    """Decode the stream's last chunk; when the stream ends before the array does, say after which object."""
    try:
        return decoder.decode(array)
    except msgspec.DecodeError as exc:
        if "truncated" not in str(exc):
            raise
    end = last_object_end(array)
    # The whole objects before the end are decoded once more, so that a bad one among them is reported first.
    complete = len(decoder.decode(array[: end + 1] + b"]")) if end >= 0 else 0
    inside_object = bool(array[end + 1 if end >= 0 else 1 :].strip(_WHITESPACE + b","))
    raise TruncatedArrayError(complete, inside_object) from None


def _escapes(buffer: bytes | bytearray, start: int, end: int) -> tuple[bool, bool]:
    """(has_escapes, may_hold_nul) of `buffer[start:end]`."""
    # A one-byte search runs at memory speed; backslashes are rare in Spotify's files.
    if buffer.find(b"\\", start, end) < 0:
        return False, False
    return True, buffer.find(_NUL_ESCAPE, start, end) >= 0


def _decode_in_place(decoder: msgspec.json.Decoder, buffer: bytearray, opener: int, cut: int) -> Any:
    """Decode `buffer[opener : cut + 1]` as a JSON array: its first byte read as `[`, followed by `]`."""
    saved_opener = buffer[opener]
    buffer[opener] = _OPEN
    closer = cut + 1
    if closer == len(buffer):
        buffer.append(_CLOSE)
        saved_closer = None
    else:
        saved_closer = buffer[closer]
        buffer[closer] = _CLOSE
    try:
        with memoryview(buffer) as view, view[opener : closer + 1] as span:
            return decoder.decode(span)
    finally:
        buffer[opener] = saved_opener
        if saved_closer is None:
            buffer.pop()
        else:
            buffer[closer] = saved_closer


def _array_start(read: Callable[[int], bytes], chunk_bytes: int) -> bytes:
    """The first bytes of the stream, from the array's opening `[` on."""
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
    return start


def _as_array(rest: bytes, first: bool) -> bytes:
    """The end of the stream as the rest of a JSON array: from the opening `[` (first) or the separating `,`."""
    body = rest.lstrip(_WHITESPACE)
    if first:
        return body
    return b"[" + (body[1:] if body.startswith(b",") else body)
