"""dbt docs on localhost: `python -m pipelines docs` generates the docs site and serves it.

`dbt docs generate` writes a static site into dbt's target folder (`index.html` plus the `manifest.json` and
`catalog.json` it fetches); any static file server can serve it. This one binds to loopback by default, because
the catalog lists every table and column of the database.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError
from pipelines.transform import run_dbt

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8580
# What the docs page needs; the rest of target/ (compiled SQL, run results) is served too but never fetched.
SITE_FILES = ("index.html", "manifest.json", "catalog.json")


def target_dir() -> Path:
    """dbt's target folder: `DBT_TARGET_PATH` when set (as dbt itself reads it), else the state dir's."""
    configured = os.environ.get("DBT_TARGET_PATH")
    return paths.DBT_PROJECT_DIR / configured if configured else paths.dbt_target_dir()


def generate(database: DatabaseUrl, target: Path | None = None) -> Path:
    """Run `dbt docs generate` into `target` (default: `target_dir()`); the catalog reads the database."""
    target = target or target_dir()
    run_dbt(database, "docs", "generate", "--target-path", str(target))
    return target


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without a log line per request (the console stays readable while someone browses)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's name
        pass


@contextmanager
def serving(site_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Iterator[str]:
    """Serve `site_dir` over HTTP in a background thread while the block runs; yield the base URL.

    Port 0 picks a free port (the tests use it).
    """
    missing = [name for name in SITE_FILES if not (site_dir / name).is_file()]
    if missing:
        raise ConfigError(f"{site_dir} has no {', '.join(missing)}: run `python -m pipelines docs` to generate them")
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot serve docs on {host}:{port} ({exc.strerror}); pick another --port") from None
    thread = threading.Thread(target=server.serve_forever, name="dbt-docs-server", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    try:
        yield f"http://{bound_host}:{bound_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_until_interrupted(
    site_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, announce: Callable[[str], None] = print
) -> None:
    """Serve `site_dir` until Ctrl-C (SIGINT) or SIGTERM; `announce` receives the URL once it answers."""
    stop = threading.Event()
    # Ctrl-C and SIGTERM (a service manager, `kill`) end the wait alike, so the socket is closed cleanly.
    stopping = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in stopping}
    try:
        with serving(site_dir, host, port) as url:
            announce(url)
            # Python runs signal handlers in the main thread only; a signal the kernel hands to a server thread
            # does not wake an untimed wait, so wake up now and then to let the handler run.
            while not stop.wait(timeout=0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
