"""`copy_text.encode_rows`: whatever the values, PostgreSQL's text-format `COPY` reads back exactly what was sent."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.export.copy_text import encode_rows

# What text format escapes or reads specially (backslash, tab, newline, carriage return, `\N`, empty), and
# characters around them.
AWKWARD = st.text(alphabet=st.sampled_from(list("\\\t\n\rN.a é🎧,\"'")), max_size=8)
ROWS = st.lists(
    st.tuples(
        st.one_of(st.none(), AWKWARD), st.one_of(st.none(), st.integers(-(2**62), 2**62)), st.none() | st.booleans()
    ),
    max_size=20,
)
SCHEMA = pa.schema([("name", pa.string()), ("number", pa.int64()), ("flag", pa.bool_())])


@pytest.fixture
def copy_back(database_url):
    conn = database_url.connect()
    with conn.cursor() as cur:
        cur.execute("create table copied (name text, number bigint, flag boolean, tail1 text, tail2 text)")
    conn.commit()

    def run(batch: pa.RecordBatch, constants: tuple[str, ...]) -> list[tuple]:
        columns = ["name", "number", "flag", *(f"tail{n}" for n in range(1, len(constants) + 1))]
        with conn.cursor() as cur:
            cur.execute("truncate copied")
            cur.copy_expert(
                f"copy copied ({', '.join(columns)}) from stdin with (format text)", _Payload(batch, constants)
            )
            cur.execute(f"select {', '.join(columns)} from copied")
            rows = cur.fetchall()
        conn.rollback()
        return rows

    yield run
    conn.close()


class _Payload:
    def __init__(self, batch: pa.RecordBatch, constants: tuple[str, ...]) -> None:
        self._data = encode_rows(batch, constants)

    def read(self, size: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rows=ROWS, constants=st.sampled_from([(), ("7",), ("1764240000.123456", "a\\b\tc")]))
def test_any_values_survive_a_text_copy(copy_back, rows, constants):
    batch = pa.RecordBatch.from_pylist([dict(zip(SCHEMA.names, row, strict=True)) for row in rows], schema=SCHEMA)

    assert copy_back(batch, constants) == [(*row, *constants) for row in rows]


def test_a_batch_without_rows_is_no_bytes():
    assert encode_rows(pa.RecordBatch.from_pylist([], schema=SCHEMA), ("1",)) == b""


def test_plain_values_are_sent_unescaped():
    batch = pa.RecordBatch.from_pylist([{"name": "Träck ♪", "number": 5, "flag": True}], schema=SCHEMA)

    assert encode_rows(batch, ("3",)) == "Träck ♪\t5\ttrue\t3\n".encode()
