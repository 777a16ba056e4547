"""A PostgreSQL server of the project's own, for machines where `DATABASE_URL` is not set.

It uses the server binaries shipped in the `pgserver` wheel, listens on 127.0.0.1 only (TCP, so dlt, dbt and
Airflow all connect the same way), and keeps its data under `.data/postgres/` so history survives restarts.
PostgreSQL refuses to run as root, so under root the server runs as the unprivileged `pgserver` user.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import subprocess
import warnings
from pathlib import Path

from pipelines.database import DatabaseUrl, ensure_role_and_database
from pipelines.errors import PipelineError

log = logging.getLogger(__name__)
# pgserver asks platformdirs for an XDG runtime dir at import time; we never use it, so its warning is noise.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

ROLE = "spotify"
DBNAME = "spotify"
_SYSTEM_USER = "pgserver"


def _binaries() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def psql_executable() -> str:
    """The psql client shipped with the server binaries."""
    return str(_binaries() / "psql")


def _run_as() -> str | None:
    """The system user to run the server as: ourselves, or `pgserver` when we are root."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    bin_path = _binaries()
    ensure_prefix_permissions(bin_path)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_path, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_path.parent / "lib", readable)
    return _SYSTEM_USER


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As PostgreSQL itself does: a port left in TIME_WAIT by the previous run of the server is still ours.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pg(tool: str, args: list[str], user: str | None, timeout: float = 60) -> None:
    result = subprocess.run(
        [str(_binaries() / tool), *args], user=user, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise PipelineError(f"embedded PostgreSQL: {tool} failed: {result.stderr.strip() or result.stdout.strip()}")


def _read_secret_file(path: Path, make: callable) -> str:
    if path.exists():
        return path.read_text().strip()
    value = str(make())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _is_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().splitlines()[0]), 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def start_server(data_dir: Path) -> DatabaseUrl:
    """Initialise (first time) and start the server; return a superuser URL. Idempotent."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    user = _run_as()
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising embedded PostgreSQL in %s", pgdata)
        pgdata.mkdir(exist_ok=True)
        if user:
            import pwd

            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(pgdata)
            entry = pwd.getpwnam(user)
            os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        _pg("initdb", ["-D", str(pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"], user)

    port_file = data_dir / "port"
    if _is_running(pgdata):
        port = int(port_file.read_text())
    else:
        wanted = int(os.environ.get("EMBEDDED_POSTGRES_PORT") or (port_file.read_text() if port_file.exists() else 0))
        port = wanted if wanted and _port_is_free(wanted) else _free_port()
        port_file.write_text(str(port))
        log.info("starting embedded PostgreSQL on 127.0.0.1:%s", port)
        # No unix socket: its path length limit bites in deep checkouts, and TCP is what every client uses.
        options = f"-h 127.0.0.1 -p {port} -k ''"
        _pg(
            "pg_ctl",
            ["-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "server.log"), "-o", options, "start"],
            user,
        )
    # Trust auth on loopback only: the password is ignored by the server but required by dlt.
    return DatabaseUrl("postgres", "trust", "127.0.0.1", port, "postgres")


def stop_server(data_dir: Path) -> bool:
    """Stop the server if it runs; return whether it was running."""
    pgdata = data_dir.resolve() / "pgdata"
    if not _is_running(pgdata):
        return False
    _pg("pg_ctl", ["-D", str(pgdata), "-w", "-m", "fast", "stop"], _run_as())
    return True


def ensure_database(data_dir: Path) -> DatabaseUrl:
    """Start the embedded server and return the URL of the project's own role and database."""
    admin = start_server(data_dir)
    password = _read_secret_file(data_dir.resolve() / "role-password", lambda: secrets.token_urlsafe(24))
    return ensure_role_and_database(admin, ROLE, password, DBNAME)
