"""`read_ahead`: the same blocks in the same order, errors where they happened, and no thread left behind."""

from __future__ import annotations

import io
import threading

import pytest

from pipelines.export.read_ahead import read_ahead


def test_blocks_arrive_in_order_then_empty():
    data = bytes(range(256)) * 40
    with read_ahead(io.BytesIO(data).read, 1000) as read:
        blocks = [read(1000) for _ in range(13)]  # 11 blocks, then the end

    assert b"".join(blocks) == data
    assert blocks[-2:] == [b"", b""]  # and stays empty


def test_an_error_is_raised_after_the_blocks_read_before_it():
    def read(size: int) -> bytes:
        read.calls += 1
        if read.calls == 3:
            raise ValueError("corrupt")
        return b"x" * size

    read.calls = 0
    with read_ahead(read, 4) as ahead:
        assert ahead(4) == b"xxxx"
        assert ahead(4) == b"xxxx"
        with pytest.raises(ValueError, match="corrupt"):
            ahead(4)
        assert ahead(4) == b""


def test_leaving_early_stops_the_reader_thread():
    reads = []

    def endless(size: int) -> bytes:
        reads.append(size)
        return b"y" * size

    before = threading.active_count()
    with read_ahead(endless, 8, depth=2) as read:
        assert read(8) == b"y" * 8

    assert threading.active_count() == before
    assert len(reads) <= 5  # the one consumed, the queued ones, one waiting for room
