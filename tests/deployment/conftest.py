"""Fixtures for tests on a real Airflow deployment: Redis for Celery, and the deployment itself."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_PORT = 6379


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis on 127.0.0.1:6379, or a `redis-server` started for this session on another port."""
    if _answers(REDIS_PORT):
        # a database of its own, emptied by the worker's first connection is not guaranteed: use a high index
        yield f"redis://127.0.0.1:{REDIS_PORT}/7"
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("Redis is not running on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis)")
    from tests.deployment.airflow_deployment import free_port

    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not _answers(port):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait()
