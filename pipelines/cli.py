"""`python -m pipelines`: authorise, load, transform, and run the whole DAG.

Every command reads the same settings (`DATABASE_URL`, `SPOTIFY_*`) and exits non-zero with one clear line when
something needs fixing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import PipelineError

app = typer.Typer(
    help="Own your Spotify listening history: load plays into PostgreSQL, model them with dbt, run it on Airflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The embedded PostgreSQL server used when DATABASE_URL is not set.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(stderr=True)


def _friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one red line and exit code 1, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PipelineError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
    )
    # dlt reads `.dlt/` from the project, whatever the working directory.
    os.environ.setdefault("DLT_PROJECT_DIR", str(paths.PROJECT_ROOT))


def resolve_database() -> DatabaseUrl:
    """`DATABASE_URL` when set; otherwise the embedded server under `.data/postgres` (started if needed)."""
    configured = DatabaseUrl.from_env()
    if configured is not None:
        return configured
    from pipelines import embedded_postgres

    database = embedded_postgres.ensure_database(paths.DATA_DIR / "postgres")
    console.print(f"DATABASE_URL is not set: using the embedded PostgreSQL at {database.redacted()}")
    return database


def _spotify_or_demo(demo: bool) -> Any:
    from pipelines import demo as demo_mode

    if not demo:
        return nullcontext()
    console.print(f"[bold yellow]{demo_mode.BANNER}[/]")
    return demo_mode.sample_spotify()


def _load(database: DatabaseUrl, demo: bool) -> dict[str, Any]:
    from pipelines.load import load_recently_played

    with _spotify_or_demo(demo):
        summary = load_recently_played(database)
    console.print(f"loaded {summary['plays_loaded']} plays into raw.recently_played")
    return summary


@app.command()
@_friendly_errors
def auth(
    redirect_uri: str = typer.Option(
        None, envvar="SPOTIFY_REDIRECT_URI", help="Must match a redirect URI registered for your Spotify app."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL to open."),
    timeout: float = typer.Option(300, help="Seconds to wait for Spotify to call back."),
) -> None:
    """Authorise once with Spotify (Authorization Code + PKCE) and store the refresh token in .dlt/secrets.toml."""
    from pipelines.auth_command import run_auth

    run_auth(redirect_uri=redirect_uri, open_browser=not no_browser, timeout_seconds=timeout, console=console)


@app.command()
@_friendly_errors
def load(demo: bool = typer.Option(False, "--demo", help="Read the bundled sample server, not Spotify.")) -> None:
    """Load new plays from Spotify into raw.recently_played."""
    _load(resolve_database(), demo)


@app.command()
@_friendly_errors
def transform() -> None:
    """Run `dbt build` (models and tests) and source freshness."""
    from pipelines import transform as dbt

    dbt.build(resolve_database())


@app.command()
@_friendly_errors
def run(demo: bool = typer.Option(False, "--demo", help="Read the bundled sample server, not Spotify.")) -> None:
    """Load, then transform: the whole job without Airflow."""
    from pipelines import transform as dbt

    database = resolve_database()
    _load(database, demo)
    dbt.build(database)


@app.command("airflow-run")
@_friendly_errors
def airflow_run(
    demo: bool = typer.Option(
        None, "--demo/--no-demo", help="Force or forbid demo data (default: demo when no credentials are configured)."
    ),
) -> None:
    """Run the spotify_elt Airflow DAG once, end to end (what `make run` does)."""
    from pipelines.airflow_runner import run_dag_once
    from pipelines.demo import spotify_credentials_configured

    database = resolve_database()
    use_demo = (not spotify_credentials_configured()) if demo is None else demo
    with _spotify_or_demo(use_demo):
        run_dag_once(database)
    if use_demo:
        from pipelines.demo import BANNER

        console.print(f"[bold yellow]{BANNER}[/]")
    console.print(
        "[bold green]done:[/] the DAG ran green. Query analytics.listening_history, e.g. "
        "`make psql` then `select * from analytics.listening_history order by played_at desc limit 10;`"
    )


@db_app.command("start")
@_friendly_errors
def db_start() -> None:
    """Start the embedded server (if DATABASE_URL is unset) and print its URL with the password masked."""
    console.print(resolve_database().redacted())


@db_app.command("url")
@_friendly_errors
def db_url() -> None:
    """Print the full database URL (it contains the password) to stdout, e.g. for `psql "$(...)"`."""
    typer.echo(str(resolve_database()))


@db_app.command("psql")
@_friendly_errors
def db_psql() -> None:
    """Open psql on the database (the psql shipped with the embedded server, so none needs installing)."""
    from pipelines import embedded_postgres

    database = resolve_database()
    psql = embedded_postgres.psql_executable()
    # The password travels in the environment, not on the command line where `ps` would show it.
    os.environ["PGPASSWORD"] = database.password
    os.execv(psql, [psql, "-h", database.host, "-p", str(database.port), "-U", database.user, database.dbname])  # noqa: S606


@db_app.command("stop")
@_friendly_errors
def db_stop() -> None:
    """Stop the embedded server."""
    from pipelines import embedded_postgres

    stopped = embedded_postgres.stop_server(paths.DATA_DIR / "postgres")
    console.print("stopped" if stopped else "the embedded server was not running")
