"""Extract and load: run the dlt pipeline that lands recently played tracks in the `raw` schema."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dlt
import psycopg2
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.pipeline import ExtractInfo

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, DatabaseUnavailable, PipelineError, first_line
from pipelines.load.pending import finish_pending_packages
from pipelines.load.storable_text import StorableStrings
from pipelines.spotify.settings import DEFAULT_ACCOUNTS_URL, DEFAULT_API_URL, REJECTED_ITEMS_METRIC
from pipelines.spotify.token_store import DEFAULT_ACCOUNT

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
ENV_DEFAULT_URLS = {"SPOTIFY_API_URL": DEFAULT_API_URL, "SPOTIFY_ACCOUNTS_URL": DEFAULT_ACCOUNTS_URL}


def source_args_from_env() -> dict[str, str]:
    """Source arguments given by `SPOTIFY_*` variables; what is unset is left to dlt's secrets."""
    return {arg: os.environ[env] for env, arg in ENV_TO_SOURCE_ARG.items() if os.environ.get(env)}


def default_pipelines_dir(database: DatabaseUrl) -> Path:
    """dlt's working dir in the state dir, one per database, so local state can never describe another database."""
    identity = f"{database.host}:{database.port}/{database.dbname}"
    return paths.dlt_dir() / hashlib.sha256(identity.encode()).hexdigest()[:12]


def pipeline_name(account: str) -> str:
    """The dlt pipeline (cursor and state) of one account: `default` keeps the single-listener pipeline's name."""
    return PIPELINE_NAME if account == DEFAULT_ACCOUNT else f"{PIPELINE_NAME}__{account}"


def make_pipeline(
    database: DatabaseUrl, pipelines_dir: Path | None = None, *, name: str = PIPELINE_NAME
) -> dlt.Pipeline:
    """The dlt pipeline `name` writing to `database`, dataset (schema) `raw`."""
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.postgres(credentials=str(database)),
        dataset_name=RAW_SCHEMA,
        pipelines_dir=str(pipelines_dir or default_pipelines_dir(database)),
    )


def persist_rotated_token(
    secrets_file: Path,
    token_file: Path | None = None,
    configured: str | None = None,
    *,
    in_use_from_token_file: bool = False,
) -> Callable[[str], None]:
    """A callback that stores a refresh token Spotify rotated, where the next run will read it.

    That is `secrets_file` (`.dlt/secrets.toml`, where `auth` writes) when it can be written, else `token_file` in
    the state dir, marked with the fingerprint of the `configured` token it replaces; a run that already uses
    the token file's token keeps writing there. The token itself never reaches a log.
    """

    def persist(token: str) -> None:
        from pipelines.spotify.secrets_file import fingerprint, update_refresh_token, write_rotated_token

        if not in_use_from_token_file:
            try:
                update_refresh_token(secrets_file, token)
            except OSError as exc:  # a read-only code mount: the state dir takes it
                log.info(
                    "cannot write %s (%s): keeping the rotated refresh token in the state dir",
                    secrets_file,
                    exc.strerror or type(exc).__name__,
                )
            else:
                if os.environ.get("SPOTIFY_REFRESH_TOKEN"):
                    log.warning(
                        "Spotify rotated the refresh token; the new one is saved in %s, but SPOTIFY_REFRESH_TOKEN is "
                        "set and takes precedence: update it (or unset it) before the next run",
                        secrets_file,
                    )
                return
        target = token_file or paths.rotated_token_file()
        if not configured:
            log.warning(
                "Spotify rotated the refresh token, but the configured one (SPOTIFY_REFRESH_TOKEN or %s) is unknown "
                "here, so the new one cannot be kept; run `python -m pipelines auth` if the next run is refused",
                secrets_file,
            )
            return
        try:
            write_rotated_token(target, token, replaces=fingerprint(configured))
        except OSError as exc:
            raise ConfigError(
                f"Spotify rotated the refresh token, but neither {secrets_file} nor {target} can be written "
                f"({exc.strerror or type(exc).__name__}): set {paths.STATE_HOME_ENV} to a writable directory, "
                "then run `python -m pipelines auth` again"
            ) from None
        log.info("Spotify rotated the refresh token; the new one is saved in %s and later runs use it", target)

    return persist


def load_recently_played(
    database: DatabaseUrl,
    *,
    pipelines_dir: Path | None = None,
    secrets_file: Path | None = None,
    token_file: Path | None = None,
    **source_args: Any,
) -> dict[str, Any]:
    """Load new plays into `raw.recently_played` and return a JSON-able summary.

    Source arguments default to the `SPOTIFY_*` environment, then `.dlt/secrets.toml`; a refresh token Spotify
    rotated while that file could not be written (`token_file`, in the state dir) comes first.

    Raises:
        ConfigError: Spotify credentials are missing, or the state dir cannot be written.
        PipelineError: Spotify or the database failed in a way the user has to act on.
    """
    # Before Spotify is asked anything: a rotated token must have somewhere to go, and dlt a working dir.
    pipelines_dir = paths.ensure_writable(pipelines_dir or default_pipelines_dir(database))
    secrets_file = secrets_file or paths.secrets_file()
    token_file = token_file or paths.rotated_token_file()
    args = {**source_args_from_env(), **source_args}
    check_urls(args)
    configured = args.get("refresh_token") or _configured_refresh_token(secrets_file)
    rotated = _rotated_token(token_file, configured)
    if rotated:
        args["refresh_token"] = rotated
    args.setdefault(
        "on_refresh_token_rotated",
        persist_rotated_token(secrets_file, token_file, configured, in_use_from_token_file=rotated is not None),
    )
    return load_plays(database, args, pipelines_dir=pipelines_dir)


def load_plays(
    database: DatabaseUrl,
    source_args: dict[str, Any],
    *,
    pipelines_dir: Path | None = None,
    name: str = PIPELINE_NAME,
) -> dict[str, Any]:
    """Run the dlt pipeline `name` once with the Spotify source built from `source_args`; a JSON-able summary.

    Extract and normalize run on their own; the load into `raw` waits for `raw_load_lock`, so the pipelines of
    several accounts loading at once never create, migrate or merge into the same tables together.

    Raises:
        ConfigError: Spotify credentials are missing.
        PipelineError: Spotify or the database failed in a way the user has to act on.
    """
    from pipelines.database.locking import raw_load_lock
    from pipelines.spotify import spotify_source

    pipelines_dir = paths.ensure_writable(pipelines_dir or default_pipelines_dir(database))
    try:
        source = spotify_source(**source_args)
    except ConfigFieldMissingException as exc:
        missing = ", ".join(f"SPOTIFY_{field.upper()}" for field in exc.fields)
        raise ConfigError(
            f"Spotify credentials missing ({missing}): set them in the environment or run "
            "`python -m pipelines auth` to write .dlt/secrets.toml"
        ) from None

    storable = StorableStrings()  # a NUL in one name would otherwise fail every run from then on
    source.resources["recently_played"].add_map(storable)
    pipeline = make_pipeline(database, pipelines_dir, name=name)
    load_ids: list[str] = []
    try:
        with raw_load_lock(database):
            # what `run` does first: a worker with an empty working dir takes the cursor from the database
            pipeline.sync_destination()
            load_ids += finish_pending_packages(pipeline, database)
        extracted = pipeline.extract(source)
        pipeline.normalize()
        with raw_load_lock(database):
            info = pipeline.load()
        info.raise_on_failed_jobs()
    except Exception as exc:  # dlt wraps everything; surface the error the user can act on
        raise _actionable(exc, database) from None
    load_ids += info.loads_ids
    plays = _rows_written(database, load_ids)
    rejected = _custom_metric(extracted, REJECTED_ITEMS_METRIC)
    repaired = storable.repaired
    log.info("loaded %d plays into %s.recently_played", plays, RAW_SCHEMA)
    if rejected:
        log.warning("skipped %d items Spotify sent without a track or a valid played_at", rejected)
    if repaired:
        log.warning("replaced characters PostgreSQL cannot store (NUL, lone surrogates) in %d strings", repaired)
    return {
        "load_ids": load_ids,
        "plays_loaded": plays,
        "items_rejected": rejected,
        "strings_repaired": repaired,
        "gaps": _gaps_recorded(database, load_ids),
        "dataset": RAW_SCHEMA,
    }


def _configured_refresh_token(secrets_file: Path) -> str | None:
    """The refresh token `.dlt/secrets.toml` holds; None when absent or unreadable (dlt then reports the file)."""
    from pipelines.spotify.secrets_file import read_spotify_secrets

    try:
        token = read_spotify_secrets(secrets_file).get("refresh_token")
    except (OSError, ValueError):
        return None
    return token if isinstance(token, str) and token else None


def _rotated_token(token_file: Path, configured: str | None) -> str | None:
    """The token Spotify rotated in an earlier run if it descends from the one configured now, else None."""
    from pipelines.spotify.secrets_file import read_rotated_token

    if not token_file.exists():
        return None
    rotated = read_rotated_token(token_file, configured)
    if rotated is None:
        log.info("ignoring %s: it does not descend from the refresh token configured now", token_file)
    return rotated


def check_urls(args: dict[str, Any]) -> None:
    """A malformed Spotify URL is a setting to fix, not an HTTP error deep inside a run."""
    for env, arg in (("SPOTIFY_API_URL", "api_url"), ("SPOTIFY_ACCOUNTS_URL", "accounts_url")):
        value = args.get(arg)
        if value is None:
            continue
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{env} must be an http(s) URL such as {ENV_DEFAULT_URLS[env]} (or unset for Spotify's), "
                f"got {str(value)[:80]!r}"
            )


def _gaps_recorded(database: DatabaseUrl, load_ids: list[str]) -> list[dict[str, str]]:
    """Gaps (spans whose plays may be lost, see pipelines.spotify) this run recorded in raw.gaps, JSON-able."""
    if not load_ids:
        return []
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f"{RAW_SCHEMA}.gaps",))
            if cur.fetchone()[0] is None:
                return []
            cur.execute(
                f"select user_id, gap_from, gap_to from {RAW_SCHEMA}.gaps where _dlt_load_id = any(%s)"  # noqa: S608
                " order by gap_from",
                (load_ids,),
            )
            return [
                {"user_id": user, "gap_from": start.isoformat(), "gap_to": end.isoformat()}
                for user, start, end in cur.fetchall()
            ]
    finally:
        conn.close()


def _rows_written(database: DatabaseUrl, load_ids: list[str]) -> int:
    """Plays this run wrote to raw.recently_played, counted in the table itself (recovered packages too)."""
    if not load_ids:
        return 0
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f"{RAW_SCHEMA}.recently_played",))
            if cur.fetchone()[0] is None:
                return 0
            cur.execute(
                f"select count(*) from {RAW_SCHEMA}.recently_played where _dlt_load_id = any(%s)",  # noqa: S608
                (load_ids,),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _custom_metric(extract: ExtractInfo, name: str) -> int:
    """A counter the source kept with `dlt.current.resource_metrics()` during this run's extract."""
    return sum(
        int(resource.custom_metrics.get(name, 0))
        for metrics_list in extract.metrics.values()
        for metrics in metrics_list
        for resource in metrics["resource_metrics"].values()
    )


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (dlt keeps the cause in `.exception`), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return chain


def _actionable(exc: BaseException, database: DatabaseUrl) -> PipelineError:
    """The innermost PipelineError behind dlt's wrappers, or one line naming the real cause.

    The database was reachable when the load began, so losing it now (a dropped connection, or a refused new
    one) is said as a lost connection, with what the next run does about it."""
    chain = _exception_chain(exc)
    lost = next((current for current in chain if isinstance(current, psycopg2.OperationalError)), None)
    for current in chain:
        if isinstance(current, DatabaseUnavailable):
            lost = current
            break
        if isinstance(current, PipelineError):
            return current
    if lost is not None:
        reason = first_line(chain[-1] if isinstance(lost, psycopg2.OperationalError) else lost)
        return DatabaseUnavailable(
            f"lost the connection to {database.redacted()} ({reason}): is PostgreSQL running and DATABASE_URL "
            "right? Run again when it is back; the next run finishes what this one left pending"
        )
    innermost = chain[-1]
    return PipelineError(f"load failed: {type(innermost).__name__}: {first_line(innermost)}")
