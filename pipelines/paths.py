"""Where the project keeps things: the code (read-only is fine) and the state dir, where everything is written.

The code is resolved from the repository root, so any working directory works. Everything the pipeline writes
(dlt's working dirs, dbt's target and logs, the manifest the DAG renders from, a refresh token Spotify rotated)
goes under one state dir: `SPOTIFY_ELT_HOME` when set; else the checkout's `.data/` when it is writable (a
laptop); else `$AIRFLOW_HOME/spotify_elt` (a read-only code mount: a container image, git-sync).
"""

import os
import tempfile
from pathlib import Path

from pipelines.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DBT_PROFILES_DIR = PROJECT_ROOT
DAGS_DIR = PROJECT_ROOT / "dags"
DATA_DIR = PROJECT_ROOT / ".data"

STATE_HOME_ENV = "SPOTIFY_ELT_HOME"


def secrets_file() -> Path:
    """`.dlt/secrets.toml` where dlt reads it: under `DLT_PROJECT_DIR` when set, else the project root."""
    return Path(os.environ.get("DLT_PROJECT_DIR") or PROJECT_ROOT) / ".dlt" / "secrets.toml"


def state_dir() -> Path:
    """The pipeline's state dir (see the module docstring). Only resolved here; `ensure_writable` creates it."""
    configured = os.environ.get(STATE_HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    if _may_write(DATA_DIR):
        return DATA_DIR
    # The code is read-only: Airflow's home is writable wherever Airflow runs (~/airflow is Airflow's own default).
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow") / "spotify_elt"


def dlt_dir() -> Path:
    """dlt's working dirs (one per database, see `pipelines.load.default_pipelines_dir`)."""
    return state_dir() / "dlt"


def dbt_target_dir() -> Path:
    """dbt's target dir for the CLI's dbt runs (never the DAG's manifest, which only `dbt_dag_dir` holds)."""
    return state_dir() / "dbt" / "target"


def dbt_log_dir() -> Path:
    """dbt's `dbt.log` for the CLI's dbt runs."""
    return state_dir() / "dbt" / "logs"


def dbt_dag_dir() -> Path:
    """The manifest the DAG renders from; only the deploy-time parse (`transform.parse`) writes it, atomically."""
    return state_dir() / "dbt" / "dag"


def rotated_token_file() -> Path:
    """A refresh token Spotify rotated while `.dlt/secrets.toml` could not be written (mode 0600)."""
    return state_dir() / "spotify" / "refresh_token.toml"


def token_key_file() -> Path:
    """The Fernet key that encrypts stored refresh tokens when `SPOTIFY_TOKEN_KEY` is not set (mode 0600)."""
    return state_dir() / "spotify-token.key"


def ensure_writable(path: Path, setting: str = STATE_HOME_ENV) -> Path:
    """Create the directory `path` and prove a file can be written there, or fail in one line naming `setting`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write to {path} ({reason}): set {setting} to a writable directory") from None
    return path


def _may_write(path: Path) -> bool:
    """Whether `path`, or the nearest directory above it that exists, is writable (a read-only mount is not)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return os.access(existing, os.W_OK)
