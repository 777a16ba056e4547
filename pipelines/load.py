"""Extract and load: run the dlt pipeline that lands recently played tracks in the `raw` schema."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

PIPELINE_NAME = "spotify_recently_played"
RAW_SCHEMA = "raw"

# The configuration contract: these variables override `.dlt/secrets.toml`.
ENV_TO_SOURCE_ARG = {
    "SPOTIFY_CLIENT_ID": "client_id",
    "SPOTIFY_CLIENT_SECRET": "client_secret",
    "SPOTIFY_REFRESH_TOKEN": "refresh_token",
    "SPOTIFY_API_URL": "api_url",
    "SPOTIFY_ACCOUNTS_URL": "accounts_url",
}
CREDENTIAL_ENV = ("SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET", "SPOTIFY_REFRESH_TOKEN")


def source_args_from_env() -> dict[str, str]:
    """Source arguments given by `SPOTIFY_*` variables; what is unset is left to dlt's secrets."""
    return {arg: os.environ[env] for env, arg in ENV_TO_SOURCE_ARG.items() if os.environ.get(env)}


def default_pipelines_dir(database: DatabaseUrl) -> Path:
    """dlt's working dir, one per database, so local state can never describe another database."""
    identity = f"{database.host}:{database.port}/{database.dbname}"
    return paths.DATA_DIR / "dlt" / hashlib.sha256(identity.encode()).hexdigest()[:12]


def make_pipeline(database: DatabaseUrl, pipelines_dir: Path | None = None) -> dlt.Pipeline:
    """The dlt pipeline writing to `database`, dataset (schema) `raw`."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=dlt.destinations.postgres(credentials=str(database)),
        dataset_name=RAW_SCHEMA,
        pipelines_dir=str(pipelines_dir or default_pipelines_dir(database)),
    )


def persist_rotated_token(secrets_file: Path) -> Callable[[str], None]:
    """A callback that stores a refresh token Spotify rotated, where the next run will read it."""

    def persist(token: str) -> None:
        from pipelines.secrets_file import update_refresh_token

        update_refresh_token(secrets_file, token)
        if os.environ.get("SPOTIFY_REFRESH_TOKEN"):
            log.warning(
                "Spotify rotated the refresh token; the new one is saved in %s, but SPOTIFY_REFRESH_TOKEN is set "
                "and takes precedence: update it (or unset it) before the next run",
                secrets_file,
            )

    return persist


def load_recently_played(
    database: DatabaseUrl,
    *,
    pipelines_dir: Path | None = None,
    secrets_file: Path | None = None,
    **source_args: Any,
) -> dict[str, Any]:
    """Load new plays into `raw.recently_played` and return a JSON-able summary.

    Source arguments default to the `SPOTIFY_*` environment, then `.dlt/secrets.toml`.

    Raises:
        ConfigError: Spotify credentials are missing.
        PipelineError: Spotify or the database failed in a way the user has to act on.
    """
    from pipelines.spotify import spotify_source

    args = {**source_args_from_env(), **source_args}
    args.setdefault("on_refresh_token_rotated", persist_rotated_token(secrets_file or paths.secrets_file()))
    try:
        source = spotify_source(**args)
    except ConfigFieldMissingException as exc:
        missing = ", ".join(f"SPOTIFY_{field.upper()}" for field in exc.fields)
        raise ConfigError(
            f"Spotify credentials missing ({missing}): set them in the environment or run "
            "`python -m pipelines auth` to write .dlt/secrets.toml"
        ) from None

    pipeline = make_pipeline(database, pipelines_dir)
    try:
        info = pipeline.run(source)
    except Exception as exc:  # dlt wraps everything; surface the error the user can act on
        raise _actionable(exc) from None
    info.raise_on_failed_jobs()
    row_counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    plays = int(row_counts.get("recently_played", 0))
    log.info("loaded %d plays into %s.recently_played", plays, RAW_SCHEMA)
    return {"load_ids": list(info.loads_ids), "plays_loaded": plays, "dataset": RAW_SCHEMA}


def _actionable(exc: BaseException) -> BaseException:
    """The innermost PipelineError behind dlt's wrappers, or a one-line PipelineError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PipelineError):
            return current
        seen.add(id(current))
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PipelineError(f"load failed: {first_line}")
