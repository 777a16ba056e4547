"""Read one streaming-history file into validated Arrow record batches, streaming.

Each chunk of the file's JSON array (see `json_array`) is decoded and type-checked by msgspec into typed
structs in one call, then turned column by column into an Arrow batch; times are parsed by Arrow's vectorised
`strptime`. No per-row Python dicts are built and no row is normalised one by one, which is what makes the
import run near the speed of a plain `COPY`.

The file may be UTF-8 (with or without a BOM) or UTF-16 (see `text_encoding`). Any problem raises
`ExportFileError` naming the file and, when there is one, the 1-based row.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from operator import attrgetter

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.export.copy_text import is_plain, mark_plain
from pipelines.export.formats import ExportFormat, arrow_schema, item_key
from pipelines.export.inputs import ExportFile
from pipelines.export.json_array import CHUNK_BYTES, Chunk, JsonArrayError, TruncatedArrayError, iter_decoded
from pipelines.export.problems import ExportFileError, OtherListenerError
from pipelines.export.read_ahead import read_ahead
from pipelines.export.text_encoding import EncodingProblem, Utf8Reader, first_invalid_utf8

# msgspec locates errors as `$[<index>]` or `$[<index>].<field>` within the decoded chunk.
_ERROR_PATH = re.compile(r"\s*-\s*at\s*`\$\[(\d+)\](?:\.(\w+))?`\s*$")
# PostgreSQL text cannot hold NUL; such a character (never seen in real exports) becomes U+FFFD.
_NUL, _REPLACEMENT = "\x00", "\ufffd"


def read_batches(
    export_file: ExportFile,
    user_id: str,
    include_network_data: bool,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    account: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """The plays of `export_file` as Arrow batches (schema: `formats.arrow_schema`), all of them `user_id`'s.

    `account`: the account the import is for, named when a file turns out to be another listener's.

    Raises:
        ExportFileError: the file is unreadable, truncated, not text in UTF-8 or UTF-16, not a Spotify history
            file, or a row is invalid.
        OtherListenerError: a play names another Spotify user than `user_id` (older exports' `username`).
    """
    export_format = export_file.export_format
    decoder = msgspec.json.Decoder(list[export_format.decoding_struct(include_network_data)])  # type: ignore[misc]
    schema = arrow_schema(export_format, include_network_data)
    rows_before = 0
    try:
        with export_file.open() as stream, read_ahead(Utf8Reader(stream.read).read, chunk_bytes) as read:
            chunks = iter_decoded(read, decoder, chunk_bytes)
            while True:
                try:
                    chunk = next(chunks, None)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise _decode_error(exc, export_file, rows_before) from None
                except TruncatedArrayError as exc:
                    raise _truncated(exc, export_file, rows_before) from None
                except UnicodeDecodeError:
                    # The decoder met a string that is not UTF-8: find the culprit byte in the file.
                    raise _not_text(export_file, _first_invalid_utf8_of(export_file)) from None
                except EncodingProblem as exc:
                    raise _not_text(export_file, exc) from None
                if chunk is None:
                    break
                if chunk.items:
                    batch = _to_batch(chunk, export_file, user_id, schema, include_network_data, rows_before)
                    _check_listener(batch, export_file, user_id, account, rows_before)
                    yield batch
                    rows_before += len(chunk.items)
    except JsonArrayError as exc:
        raise ExportFileError(export_file.name, None, f"not a Spotify streaming history file: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ExportFileError(
            export_file.name, None, f"the zip is corrupt here ({exc}); download the export again"
        ) from None
    except OSError as exc:
        raise ExportFileError(export_file.name, None, f"cannot be read ({exc.strerror or exc})") from None


def _first_invalid_utf8_of(export_file: ExportFile) -> EncodingProblem | None:
    """The file's first byte that is not valid UTF-8 (read once more: only ever on the way to an error)."""
    with export_file.open() as stream:
        return first_invalid_utf8(stream.read)


def _not_text(export_file: ExportFile, problem: EncodingProblem | None) -> ExportFileError:
    detail = f" ({problem.detail})" if problem is not None else ""
    return ExportFileError(
        export_file.name,
        None,
        f"not UTF-8 or UTF-16 text{detail}; re-download the export or save the file as UTF-8",
    )


def _truncated(exc: TruncatedArrayError, export_file: ExportFile, rows_before: int) -> ExportFileError:
    complete = rows_before + exc.complete
    if exc.inside_object:
        return ExportFileError(
            export_file.name,
            complete + 1,
            "the file ends in the middle of this play (truncated?): download the export again",
        )
    return ExportFileError(
        export_file.name,
        None,
        f"the file ends after row {complete}, before its list of plays is closed (truncated?): download it again",
    )


def _decode_error(exc: msgspec.MsgspecError, export_file: ExportFile, rows_before: int) -> ExportFileError:
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        row, problem = _locate(message, rows_before)
        kind = "extended streaming history" if export_file.export_format.name == "extended" else "account data"
        return ExportFileError(export_file.name, row, f"{problem} (not a valid Spotify {kind} play)")
    row, problem = _locate(message, rows_before)
    return ExportFileError(export_file.name, row, f"invalid JSON: {problem}")


def _locate(message: str, rows_before: int) -> tuple[int | None, str]:
    """The 1-based file row and the problem of a msgspec error message."""
    match = _ERROR_PATH.search(message)
    if match is None:
        return None, message
    problem = message[: match.start()]
    if match.group(2):
        problem = f"field `{match.group(2)}`: {problem}"
    return rows_before + int(match.group(1)) + 1, problem


def _to_batch(
    chunk: Chunk,
    export_file: ExportFile,
    user_id: str,
    schema: pa.Schema,
    include_network_data: bool,
    rows_before: int,
) -> pa.RecordBatch:
    export_format = export_file.export_format
    plays = chunk.items
    count = len(plays)
    arrays: list[pa.Array] = [
        pa.repeat(pa.scalar(user_id, pa.string()), count),
        _times(plays, export_format, export_file, rows_before),
    ]
    by_column: dict[str, pa.Array] = {}
    for field in export_format.columns(include_network_data):
        values = list(map(attrgetter(field.json_name), plays))
        if field.fallback_json_name is not None:
            older = map(attrgetter(field.fallback_json_name), plays)
            values = [value if value is not None else old for value, old in zip(values, older, strict=True)]
        array = pa.array(values, type=field.arrow_type)
        if field.arrow_type == pa.string() and chunk.may_hold_nul:
            array = _storable(array)
        elif field.column == "ms_played":
            _check_not_negative(array, export_file, rows_before)
        arrays.append(array)
        by_column[field.column] = array
    arrays.append(item_key(export_format, by_column))
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    # Without a backslash in the chunk's JSON, no value has anything for COPY to escape.
    return batch if chunk.has_escapes or not is_plain(user_id) else mark_plain(batch)


def _check_listener(
    batch: pa.RecordBatch, export_file: ExportFile, user_id: str, account: str | None, rows_before: int
) -> None:
    """Refuse another listener's file: older exports name the Spotify user in every play (`username`); newer ones,
    account data and plays with a null `username` say nothing, and pass."""
    if "username" not in batch.schema.names:
        return
    usernames = batch.column("username")
    if usernames.null_count == len(usernames):
        return
    foreign = pc.fill_null(pc.not_equal(usernames, pa.scalar(user_id, pa.string())), False)
    if not pc.any(foreign).as_py():
        return
    index = pc.index(foreign, True).as_py()
    row = rows_before + index + 1
    raise OtherListenerError(
        export_file.name,
        row if row > 1 else None,  # a whole file of someone else's, the usual case, names no row
        username=usernames[index].as_py(),
        user_id=user_id,
        account=account,
    )


def _times(plays: list, export_format: ExportFormat, export_file: ExportFile, rows_before: int) -> pa.Array:
    """The time field as UTC text that PostgreSQL reads into timestamptz; a value that is not a time names its row.

    The text is checked with Arrow's vectorised `strptime` but kept as text: formatting parsed timestamps back
    into COPY text costs more than all other columns together, and PostgreSQL parses ISO 8601 at `COPY` anyway.
    """
    raw = pa.array(list(map(attrgetter(export_format.time_field), plays)), type=pa.string())
    parsed = pc.strptime(raw, format=export_format.time_format, unit="s", error_is_null=True)
    if parsed.null_count:
        index = pc.index(pc.is_null(parsed), True).as_py()
        example = "2013-06-28T17:01:20Z" if export_format.name == "extended" else "2023-01-31 23:59"
        raise ExportFileError(
            export_file.name,
            rows_before + index + 1,
            f"field `{export_format.time_field}`: {raw[index].as_py()!r} is not a UTC time like {example!r}",
        )
    if export_format.time_format.endswith("Z"):
        return raw
    # Account data's "2023-01-31 23:59" carries no zone; Spotify writes UTC.
    return pc.binary_join_element_wise(raw, pa.scalar("Z"), "")


def _check_not_negative(array: pa.Array, export_file: ExportFile, rows_before: int) -> None:
    negative = pc.less(array, 0)
    if pc.any(negative).as_py():
        index = pc.index(negative, True).as_py()
        raise ExportFileError(
            export_file.name, rows_before + index + 1, f"field `ms_played`: {array[index].as_py()} is negative"
        )


def _storable(array: pa.Array) -> pa.Array:
    if array.null_count == len(array) or not pc.any(pc.match_substring(array, _NUL)).as_py():
        return array
    return pc.replace_substring(array, _NUL, _REPLACEMENT)
