"""Where the project keeps things, resolved from the repository root so any working directory works."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DBT_PROFILES_DIR = PROJECT_ROOT
DAGS_DIR = PROJECT_ROOT / "dags"
DATA_DIR = PROJECT_ROOT / ".data"
SECRETS_FILE = PROJECT_ROOT / ".dlt" / "secrets.toml"
