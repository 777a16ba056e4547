"""Where the project keeps things, resolved from the repository root so any working directory works."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DBT_PROFILES_DIR = PROJECT_ROOT
DAGS_DIR = PROJECT_ROOT / "dags"
DATA_DIR = PROJECT_ROOT / ".data"


def secrets_file() -> Path:
    """`.dlt/secrets.toml` where dlt reads it: under `DLT_PROJECT_DIR` when set, else the project root."""
    return Path(os.environ.get("DLT_PROJECT_DIR") or PROJECT_ROOT) / ".dlt" / "secrets.toml"
