"""Run `COPY ... FROM STDIN` jobs in a background thread, so that parsing the export and loading it overlap.

A `COPY` is only as fast as its slower side: the Python that turns JSON into rows, or the PostgreSQL backend
that stores them. Sent from the parsing thread, every chunk waits until the server has taken it in, and the two
sides take turns; sent from this worker, the main thread parses the next chunk while the server stores the
previous one, each on its own core (psycopg2 releases the GIL while it sends). A bounded queue between the
two keeps memory flat.

All jobs run on the caller's cursor, one after another, inside the caller's transaction. Each job is wrapped in
a savepoint, so one failed job (a file found invalid halfway, or a duplicate key) is undone without touching
the jobs before it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psycopg2
from psycopg2 import errors

log = logging.getLogger(__name__)

QUEUED_CHUNKS = 8
_PUT_WAIT_SECONDS = 0.5


class Outcome(Enum):
    DONE = "done"
    ABORTED = "aborted"  # the producer gave up on the job (an invalid file)
    DUPLICATE = "duplicate"  # a row broke a unique constraint: the job stored nothing


@dataclass
class CopyJob:
    """One `COPY` statement, then optionally more work on the same cursor (inside the job's savepoint).

    Attributes:
        statement: `COPY <table> (<columns>) FROM STDIN` (text format, or whatever format `encode` produces).
        encode: turns each chunk written into the bytes sent (in the worker's thread); None: chunks are bytes.
        then: run after the copy succeeded; returns the job's row count (default: the rows copied).
        tag: anything the caller needs to recognise the job's result.
    """

    statement: str
    encode: Callable[[Any], bytes] | None = None
    then: Callable[[Any], int] | None = None
    tag: Any = None


@dataclass
class JobResult:
    job: CopyJob
    outcome: Outcome
    rows: int = 0


class _End:
    """Queue markers: the job's data ends here (`aborted`: the producer gave up on it)."""

    def __init__(self, aborted: bool) -> None:
        self.aborted = aborted


_COMPLETE, _ABORT, _STOP = _End(aborted=False), _End(aborted=True), object()


class _Aborted(Exception):
    """Raised inside psycopg2's read of the job's data, which makes it cancel the COPY."""


class CopyWorker:
    """A thread that runs `CopyJob`s on `cursor`, fed by the caller with chunks of COPY data (or what jobs encode).

    Use: `start(job)`, `write(chunk)` any number of times, then `end()` (or `abort()`); repeat; `wait()`
    returns the results of the jobs so far, `close()` stops the thread. A database error other than a duplicate
    key stops the worker: it is raised by the next call.
    """

    def __init__(self, cursor: Any, queued_chunks: int = QUEUED_CHUNKS) -> None:
        self._cursor = cursor
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queued_chunks)
        self._results: list[JobResult] = []
        self._error: BaseException | None = None
        self._idle = threading.Condition()
        self._pending_jobs = 0
        self._thread = threading.Thread(target=self._run, name="copy-worker", daemon=True)
        self._thread.start()

    def start(self, job: CopyJob) -> None:
        with self._idle:
            self._pending_jobs += 1
        self._put(job)

    def write(self, chunk: Any) -> None:
        self._put(chunk)

    def end(self) -> None:
        self._put(_COMPLETE)

    def abort(self) -> None:
        self._put(_ABORT)

    def wait(self) -> list[JobResult]:
        """Block until every job started so far has finished; their results, in order."""
        with self._idle:
            while self._pending_jobs and self._error is None and self._thread.is_alive():
                self._idle.wait(_PUT_WAIT_SECONDS)
        self._raise_error()
        return list(self._results)

    def close(self) -> None:
        """Stop the thread (after the jobs already queued)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _put(self, item: Any) -> None:
        self._raise_error()
        while True:
            try:
                self._queue.put(item, timeout=_PUT_WAIT_SECONDS)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise_error()
                    raise RuntimeError("the COPY worker stopped") from None

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while (job := self._queue.get()) is not _STOP:
                if not isinstance(job, CopyJob):
                    raise TypeError(f"expected a CopyJob, got {type(job).__name__}: start() a job before writing")
                self._results.append(self._copy(job))
                with self._idle:
                    self._pending_jobs -= 1
                    self._idle.notify_all()
        except BaseException as exc:  # handed to the producer, which re-raises it in its own thread
            self._error = exc
            with self._idle:
                self._idle.notify_all()
            self._discard_until_stop()

    def _copy(self, job: CopyJob) -> JobResult:
        reader = _JobData(self._queue, job.encode)
        self._cursor.execute("savepoint copy_job")
        try:
            self._cursor.copy_expert(job.statement, reader, size=1 << 20)
            rows = job.then(self._cursor) if job.then is not None else self._cursor.rowcount
        except (errors.UniqueViolation, errors.QueryCanceled) as exc:
            reader.discard_rest()
            self._cursor.execute("rollback to savepoint copy_job")
            if isinstance(exc, errors.UniqueViolation):
                return JobResult(job, Outcome.DUPLICATE)
            if reader.aborted:
                return JobResult(job, Outcome.ABORTED)
            raise
        except psycopg2.Error:
            reader.discard_rest()
            raise
        self._cursor.execute("release savepoint copy_job")
        return JobResult(job, Outcome.DONE, rows)

    def _discard_until_stop(self) -> None:
        while self._queue.get() is not _STOP:
            pass


class _JobData:
    """The file-like object psycopg2 reads a job's data from: the queued chunks up to the job's end marker."""

    def __init__(self, chunks: queue.Queue[Any], encode: Callable[[Any], bytes] | None) -> None:
        self._chunks = chunks
        self._encode = encode
        self.finished = False
        self.aborted = False

    def read(self, size: int = -1) -> bytes:
        if self.finished:
            return b""
        item = self._chunks.get()
        if not _is_marker(item):
            return self._encode(item) if self._encode is not None else item
        self._finish(item)
        if self.aborted:
            raise _Aborted("the file was rejected while it was being loaded")
        return b""

    def discard_rest(self) -> None:
        """Consume what is left of the job's chunks (psycopg2 stops reading when the server fails)."""
        while not self.finished:
            item = self._chunks.get()
            if _is_marker(item):
                self._finish(item)

    def _finish(self, marker: Any) -> None:
        self.finished = True
        # Stopping the worker in the middle of a job gives the job up.
        self.aborted = marker is _STOP or marker.aborted
        if marker is _STOP:
            self._chunks.put(_STOP)  # seen again by the worker's loop, which then ends


def _is_marker(item: Any) -> bool:
    return isinstance(item, _End) or item is _STOP
