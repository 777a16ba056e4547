"""Arrow record batches as the text format of PostgreSQL's `COPY`: one line per row, tab-separated, `\\N` for NULL.

Text rather than CSV because the server parses it faster: Arrow's CSV writer quotes every string, and quoted
CSV fields cost PostgreSQL about a quarter more time per row than the same values in text format
(bench/RESULTS.md). One vectorised kernel joins a batch's columns into its lines, without the GIL. Values need
escaping only when they hold a backslash, tab, newline or carriage return, which Spotify's names almost never
do. Whoever builds a batch and knows that none of its values does (the export reader: a chunk of JSON
without a single backslash cannot decode to one) marks it with `mark_plain`; the values of other batches are
searched and escaped, column by column.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

NULL = "\\N"
# Backslash first: the other escapes add backslashes of their own.
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_SPECIAL = r"[\\\t\n\r]"
_OFFSET = struct.Struct("<i")
_PLAIN_KEY = b"copy_text.plain"


def mark_plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch, marked as holding no value with a backslash, tab, newline or carriage return."""
    return batch.replace_schema_metadata({_PLAIN_KEY: b"true"})


def is_plain(value: str) -> bool:
    """Whether text format reads `value` as it is."""
    return escape(value) == value


def encode_rows(batch: pa.RecordBatch, constants: Sequence[str] = ()) -> bytes:
    """The batch's rows as `COPY ... FROM STDIN` text-format lines, each ending with `constants` (the same
    values in every row, e.g. a load id)."""
    if not batch.num_rows:
        return b""
    columns = [_as_text(column) for column in batch.columns]
    if (batch.schema.metadata or {}).get(_PLAIN_KEY) != b"true":
        columns = [_escaped(column) for column in columns]
    return _join(columns, [escape(value) for value in constants])


def escape(value: str) -> str:
    """One value as text-format COPY reads it."""
    for special, escaped in _ESCAPES:
        value = value.replace(special, escaped)
    return value


def _as_text(column: pa.Array) -> pa.Array:
    # PostgreSQL reads Arrow's renderings of integers and booleans (`true` / `false`) as they are.
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _join(columns: list[pa.Array], tail: list[str]) -> bytes:
    values: list[pa.Array | pa.Scalar] = [*columns, *map(pa.scalar, tail)]
    last = values[-1]
    if isinstance(last, pa.Scalar):
        values[-1] = pa.scalar(last.as_py() + "\n")
    else:
        values[-1] = pc.binary_join_element_wise(last, "\n", "", null_handling="replace", null_replacement=NULL)
    lines = pc.binary_join_element_wise(*values, "\t", null_handling="replace", null_replacement=NULL)
    # The lines lie one after the other in the array's data buffer: that is the whole payload.
    _, offsets, data = lines.buffers()
    start = _OFFSET.unpack_from(offsets, _OFFSET.size * lines.offset)[0]
    end = _OFFSET.unpack_from(offsets, _OFFSET.size * (lines.offset + len(lines)))[0]
    return data[start:end].to_pybytes()


def _escaped(column: pa.Array) -> pa.Array:
    if not pc.any(pc.match_substring_regex(column, _SPECIAL)).as_py():
        return column
    for special, escaped in _ESCAPES:
        column = pc.replace_substring(column, special, escaped)
    return column
