"""`json_array.iter_decoded`: any chunk size decodes any array of flat objects exactly as one `json.loads`."""

from __future__ import annotations

import io
import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.export.json_array import JsonArrayError, TruncatedArrayError, iter_decoded

# The characters that could fool a cut: braces, brackets, commas, quotes, backslashes, NUL, and non-ASCII.
AWKWARD = st.text(alphabet=st.sampled_from(list('}{][,:"\\ \x00\n\tab1é🎧')), max_size=12)
VALUES = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.booleans(), AWKWARD)
OBJECTS = st.lists(st.dictionaries(st.sampled_from(["ts", "ms", "name", "}", '"x']), VALUES, max_size=4), max_size=30)
DECODER = msgspec.json.Decoder(list[dict[str, str | int | bool | None]])


def decoded(data: bytes, chunk_bytes: int) -> list[dict]:
    chunks = list(iter_decoded(io.BytesIO(data).read, DECODER, chunk_bytes))
    for chunk in chunks:
        values = [str(value) for item in chunk.items for value in item.values()]
        if any("\x00" in value for value in values):
            assert chunk.may_hold_nul  # a NUL is never missed (it would break PostgreSQL's text)
        if any(special in value for value in values for special in "\\\t\n\r\x00"):
            assert chunk.has_escapes  # nor is a character that COPY's text format escapes
    return [item for chunk in chunks for item in chunk.items]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    objects=OBJECTS,
    indent=st.sampled_from([None, 0, 2]),
    ensure_ascii=st.booleans(),
    chunk_bytes=st.integers(1, 300),
)
def test_any_chunking_decodes_like_json_loads(objects, indent, ensure_ascii, chunk_bytes):
    data = json.dumps(objects, indent=indent, ensure_ascii=ensure_ascii).encode()

    assert decoded(data, chunk_bytes) == json.loads(data)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 4096])
@pytest.mark.parametrize(
    "data",
    [
        b'[{"a": 1}] {"a": 2}',  # bytes after the array
        b'[{"a": 1} {"a": 2}]',  # a missing comma
    ],
)
def test_malformed_json_fails_in_the_decoder(data, chunk_bytes):
    with pytest.raises(msgspec.DecodeError):
        decoded(data, chunk_bytes)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 4096])
@pytest.mark.parametrize(
    ("data", "whole_objects", "inside_object"),
    [
        (b'[{"a": 1}, {"a": 2}', 2, False),  # no closing bracket
        (b'[{"a": 1}, {"a": 2},\n', 2, False),
        (b'[{"a": 1}, {"a": "unterminated', 1, True),  # inside a string
        (b'[{"a": 1}, {"a": "}, {", "b', 1, True),  # inside an object, after a brace in a string
        (b'[{"a": 1}, {"a": 2}, {"a"', 2, True),
        (b"[", 0, False),
        (b'[{"a', 0, True),
    ],
)
def test_a_truncated_array_says_how_many_whole_objects_precede_the_end(data, whole_objects, inside_object, chunk_bytes):
    chunks = iter_decoded(io.BytesIO(data).read, DECODER, chunk_bytes)
    decoded_before = 0
    with pytest.raises(TruncatedArrayError) as raised:
        for chunk in chunks:
            decoded_before += len(chunk.items)

    assert decoded_before + raised.value.complete == whole_objects
    assert raised.value.inside_object is inside_object


@pytest.mark.parametrize(
    ("data", "said"),
    [(b"", "empty"), (b'  {"a": 1}', "single JSON object"), (b"ts,ms\n1,2", "not JSON")],
)
def test_what_is_not_an_array_is_named(data, said):
    with pytest.raises(JsonArrayError, match=said):
        decoded(data, 16)
