"""dbt docs inside the Airflow UI: the DAG publishes them, Cosmos' dbt-docs plugin shows them.

Airflow 3.1+ with Cosmos lists every project of `[cosmos] dbt_docs_projects` (a JSON object: slug ->
{"dir", "name", ...}) under Browse and serves `<dir>/index.html`, `manifest.json` and `catalog.json` at
`/cosmos/<slug>/dbt_docs_index.html`. The DAG's docs task runs `dbt docs generate` after a green build and
copies those three files into the same `dir`, so the setting is the one place both sides read.
Without the setting the DAG writes to `$AIRFLOW_HOME/dbt_docs`, which `airflow_runner` configures by default.

The site depends on the dbt project and on the database's relations, which change only with the project: an
hourly run whose deploy-time manifest and database are those the published site was generated from leaves it
as it is (`publish_docs.PublishDbtDocs`) instead of spending 4-5 s regenerating the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipelines import paths
from pipelines.errors import ConfigError
from pipelines.transform.docs_site import SITE_FILES

# Beside the published files: what they were generated from (see `source_stamp`).
STAMP_FILE = ".generated-from.json"
DOCS_SLUG = "spotify_history"
DOCS_NAME = "dbt Docs (Spotify history)"
PROJECTS_ENV = "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS"


def projects_setting(docs_dir: Path) -> str:
    """The `[cosmos] dbt_docs_projects` value that makes the plugin serve `docs_dir` as this project."""
    return json.dumps({DOCS_SLUG: {"dir": str(docs_dir), "name": DOCS_NAME}})


def default_docs_dir(airflow_home: Path | None = None) -> Path:
    """`$AIRFLOW_HOME/dbt_docs` (Airflow's own default home when unset)."""
    home = airflow_home or Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return home / "dbt_docs"


def docs_dir() -> Path:
    """Where the plugin reads this project's docs: its `dir` in `[cosmos] dbt_docs_projects`, else the default."""
    from airflow.configuration import conf

    raw = conf.get("cosmos", "dbt_docs_projects", fallback=None)
    if not raw:
        return default_docs_dir()
    try:
        configured = json.loads(raw).get(DOCS_SLUG, {}).get("dir")
    except (AttributeError, json.JSONDecodeError):
        raise ConfigError("[cosmos] dbt_docs_projects is not a JSON object of projects") from None
    if not configured:
        return default_docs_dir()
    if "://" in configured:
        raise ConfigError(
            f"[cosmos] dbt_docs_projects points {DOCS_SLUG} at {configured}; this DAG publishes to a local folder only"
        )
    return Path(configured)


def publish(project_dir: str, **_: Any) -> None:
    """Cosmos callback of the docs task: copy the generated site from `<project_dir>/target` to `docs_dir()`.

    Each file is written beside its destination and renamed over it, so the UI never serves a half-written file.
    """
    source = Path(project_dir) / "target"
    destination = docs_dir()
    destination.mkdir(parents=True, exist_ok=True)
    for name in SITE_FILES:
        fd, partial = tempfile.mkstemp(dir=destination, prefix=f".{name}.")
        os.close(fd)
        shutil.copyfile(source / name, partial)
        # mkstemp's 0600 would hide the file from an api-server running as another user
        os.chmod(partial, 0o644)
        os.replace(partial, destination / name)


def source_stamp(manifest: Path, database: str) -> dict[str, str] | None:
    """What a generated site depends on: the deploy-time manifest (by checksum) and the database it catalogued.

    None without a deploy-time manifest: then nothing says the project is unchanged, and the site is regenerated."""
    if not manifest.is_file():
        return None
    return {"manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(), "database": database}


def is_current(stamp: dict[str, str] | None, destination: Path | None = None) -> bool:
    """Whether the site published in `destination` (default `docs_dir()`) was generated from `stamp`'s sources."""
    destination = destination or docs_dir()
    if stamp is None or not all((destination / name).is_file() for name in SITE_FILES):
        return False
    try:
        return json.loads((destination / STAMP_FILE).read_text()) == stamp
    except (OSError, ValueError):
        return False


def write_stamp(stamp: dict[str, str] | None, destination: Path | None = None) -> None:
    """Record what the site just published was generated from (or forget it, when that is unknown)."""
    path = (destination or docs_dir()) / STAMP_FILE
    if stamp is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(stamp))


def operator_args() -> dict[str, Any]:
    """Arguments of the DAG's `DbtDocsLocalOperator`: the transform's project, profile and dbt, plus `publish`."""
    # Imported here: airflow_runner imports this module in the CLI process, which should not load Cosmos.
    from pipelines import orchestration, transform

    execution = orchestration.execution_config()
    return {
        "project_dir": str(paths.DBT_PROJECT_DIR),
        "profile_config": orchestration.profile_config(),
        "dbt_executable_path": str(execution.dbt_executable_path),
        "invocation_mode": execution.invocation_mode,
        "install_deps": False,
        # A standalone operator has no Cosmos cache of its own (so no partial parse): share the task group's,
        # where the deploy-time parse and every dbt task leave `partial_parse.msgpack`. It runs after them all.
        "cache_dir": transform.cosmos_cache_dir(),
        "callback": publish,
        **orchestration.DBT_DEFAULT_ARGS,
    }
