"""`python -m pipelines`: authorise, load, transform, and run the whole DAG.

Every command reads the same settings (`DATABASE_URL`, `SPOTIFY_*`) and exits non-zero with one clear line when
something needs fixing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError

app = typer.Typer(
    help="Own your Spotify listening history: load plays into PostgreSQL, model them with dbt, run it on Airflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The embedded PostgreSQL server used when DATABASE_URL is not set.", no_args_is_help=True)
app.add_typer(db_app, name="db")
accounts_app = typer.Typer(
    help="The listeners this pipeline loads, one Spotify account each (README: 'Accounts: several listeners').",
    no_args_is_help=True,
)
app.add_typer(accounts_app, name="accounts")

console = Console(stderr=True)


def _friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one red line and exit code 1 (75: busy), never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            error = exc if isinstance(exc, PipelineError) else _broken_config_file(exc)
            if error is None:
                raise
            # Escaped: a file name or a server's message may hold what rich reads as markup (`[/x]`).
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(error, "exit_code", 1)) from None

    return wrapper


def _broken_config_file(exc: Exception) -> ConfigError | None:
    """dlt's "cannot parse .dlt/secrets.toml" as one line; the parser's text is left out, it may quote a secret."""
    from dlt.common.configuration.providers.toml import TomlProviderReadException

    if not isinstance(exc, TomlProviderReadException):
        return None
    where = re.search(r"line \d+,? col(?:umn)? \d+", str(exc))
    existing = [path for path in exc.full_paths if os.path.exists(path)] or exc.full_paths
    return ConfigError(
        f"{existing[0]} is not valid TOML{f' ({where.group(0)})' if where else ''}: fix it, or delete it and run "
        "`python -m pipelines auth` again"
    )


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
    )
    # dlt reads `.dlt/` from the project, whatever the working directory.
    os.environ.setdefault("DLT_PROJECT_DIR", str(paths.PROJECT_ROOT))
    # dlt logs every retried or failed job with a traceback; the CLI reports failures as one line instead,
    # and --verbose shows dlt's own logs.
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "DEBUG" if verbose else "CRITICAL")


def resolve_database() -> DatabaseUrl:
    """`DATABASE_URL` when set; otherwise the embedded server under `.data/postgres` (started if needed)."""
    configured = DatabaseUrl.from_env()
    if configured is not None:
        # Fail here, in one line naming DATABASE_URL, rather than deep inside dlt, dbt or Airflow.
        configured.connect().close()
        return configured
    from pipelines.database import embedded as embedded_postgres

    database = embedded_postgres.ensure_database(paths.DATA_DIR / "postgres")
    console.print(f"DATABASE_URL is not set: using the embedded PostgreSQL at {database.redacted()}")
    return database


def _exclusive(database: DatabaseUrl, command: str) -> AbstractContextManager[None]:
    """The pipeline lock: a second writing command (load, run, transform...) on this database exits with 75."""
    from pipelines.database.locking import pipeline_lock

    return pipeline_lock(database, command)


def _spotify_or_demo(demo: bool) -> Any:
    from pipelines import demo as demo_mode

    if not demo:
        return nullcontext()
    console.print(f"[bold yellow]{demo_mode.BANNER}[/]")
    return demo_mode.sample_spotify()


def _load(database: DatabaseUrl, demo: bool) -> bool:
    """Load every active account, printing one line per account as it ends; True when none failed."""
    from pipelines.load.per_account import expiry_lines, load_accounts

    def say(outcome: Any) -> None:
        style = {"loaded": "green", "skipped": "yellow"}.get(outcome.status, "red")
        console.print(f"[{style}]{escape(outcome.line())}[/]", soft_wrap=True)
        if outcome.summary.get("items_rejected"):
            console.print(f"  [bold yellow]skipped {outcome.summary['items_rejected']} unusable items[/] (see above)")

    with _spotify_or_demo(demo):
        for line in expiry_lines(database):
            console.print(f"[bold yellow]warning:[/] {escape(line)}", soft_wrap=True)
        outcomes = load_accounts(database, on_outcome=say)
    failed = [outcome for outcome in outcomes if outcome.failed]
    if len(failed) == 1 and len(outcomes) == 1:  # one listener: the reason itself is the error line
        console.print(f"[bold red]error:[/] {escape(failed[0].line())}", soft_wrap=True)
    elif failed:
        names = ", ".join(outcome.account for outcome in failed)
        console.print(f"[bold red]error:[/] the load failed for {names}; the other accounts are loaded")
    return not failed


@app.command()
@_friendly_errors
def auth(
    redirect_uri: str = typer.Option(
        None, envvar="SPOTIFY_REDIRECT_URI", help="Must match a redirect URI registered for your Spotify app."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL to open."),
    timeout: float = typer.Option(300, help="Seconds to wait for Spotify to call back."),
    account: str = typer.Option(
        None,
        "--account",
        help="Store the listener as this account (default: `default`, whose token also goes to .dlt/secrets.toml).",
    ),
    client_id: str = typer.Option(
        None,
        "--client-id",
        help="Authorise this Spotify app instead of SPOTIFY_CLIENT_ID's (5 listeners per app); "
        "its secret comes from SPOTIFY_CLIENT_SECRET_<ID>.",
    ),
) -> None:
    """Authorise a listener with Spotify (Authorization Code + PKCE) and store them as an account.

    The account `default` also keeps today's single-listener file, .dlt/secrets.toml.
    """
    from pipelines.spotify.accounts import run_account_auth
    from pipelines.spotify.token_store import DEFAULT_ACCOUNT, validate_name

    name = validate_name(account or DEFAULT_ACCOUNT)
    # A first `auth` on a laptop (no --account, no DATABASE_URL) starts no database: the token it writes to
    # .dlt/secrets.toml becomes the account `default` on the first run.
    database = resolve_database() if account is not None or DatabaseUrl.from_env() is not None else None
    run_account_auth(
        name,
        database=database,
        redirect_uri=redirect_uri,
        open_browser=not no_browser,
        timeout_seconds=timeout,
        console=console,
        client_id=client_id,
    )


@app.command()
@_friendly_errors
def load(demo: bool = typer.Option(False, "--demo", help="Read the bundled sample server, not Spotify.")) -> None:
    """Load new plays from Spotify into raw.recently_played."""
    database = resolve_database()
    with _exclusive(database, "load"):
        loaded = _load(database, demo)
    if not loaded:
        raise typer.Exit(1)


@app.command()
@_friendly_errors
def transform() -> None:
    """Run `dbt build` (models and tests) and source freshness."""
    from pipelines import transform as dbt

    database = resolve_database()
    with _exclusive(database, "transform"):
        dbt.build(database)


@app.command()
@_friendly_errors
def parse() -> None:
    """Deploy step: `dbt parse` as Cosmos runs it, for the DAG's manifest and its tasks' partial parse.

    Run it after each deploy on every machine that parses the DAG or runs its tasks, with the worker's
    environment (AIRFLOW_CONN_SPOTIFY_POSTGRES, SPOTIFY_ELT_HOME, [cosmos] cache_dir); see docs/deploy.md.
    """
    from pipelines import transform as dbt

    manifest = dbt.parse()
    console.print(f"the DAG renders from {manifest}")


@app.command()
@_friendly_errors
def run(demo: bool = typer.Option(False, "--demo", help="Read the bundled sample server, not Spotify.")) -> None:
    """Load, then transform: the whole job without Airflow."""
    from pipelines import transform as dbt

    database = resolve_database()
    with _exclusive(database, "run"):
        loaded = _load(database, demo)
        # the accounts that did load still reach the marts
        dbt.build(database)
    if not loaded:
        raise typer.Exit(1)


@app.command("import-history")
@_friendly_errors
def import_history(
    paths: list[str] = typer.Argument(  # noqa: B008 (typer's idiom)
        ..., help="The export's .zip (my_spotify_data.zip), its extracted folder, or streaming-history JSON files."
    ),
    account: str = typer.Option(
        None, "--account", help="The listener whose export it is (needed when there are several accounts)."
    ),
    user_id: str = typer.Option(
        None,
        "--user-id",
        help="Spotify user the plays belong to, without accounts (default: the one user in raw.recently_played).",
    ),
    include_network_data: bool = typer.Option(
        False, "--include-network-data", help="Also store IP addresses and user agents (not stored by default)."
    ),
    skip_invalid_files: bool = typer.Option(
        False, "--skip-invalid-files", help="Import the valid files even if some are rejected (default: none)."
    ),
) -> None:
    """Import Spotify's data export (streaming history) into raw: fills gaps and history before the first load.

    A file of another listener's export (older files name the Spotify user) is refused; the others are imported.
    """
    from pathlib import Path

    from pipelines.export.command import run_import

    database = resolve_database()
    with _exclusive(database, "import-history"):
        run_import(
            database,
            [Path(path) for path in paths],
            console=console,
            user_id=user_id,
            account=account,
            include_network_data=include_network_data,
            skip_invalid_files=skip_invalid_files,
        )


def _plain(line: str) -> None:
    """A line as it is: task names and paths are not markup, and CI logs get no wrapping."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _import_demo_year(database: DatabaseUrl) -> Any:
    """The demo listener's year, imported as a Spotify export unless it is already (then nothing is added)."""
    from pipelines import demo as demo_mode

    console.print(f"[bold yellow]{demo_mode.YEAR_BANNER}[/]", soft_wrap=True)
    year = demo_mode.demo_year_of(database)
    span = f"{year.first_play_at:%Y-%m-%d} to {year.last_day:%Y-%m-%d}"
    with _exclusive(database, "airflow-run (demo import)"):
        imported = demo_mode.import_demo_year(database, year)
    if imported is None:
        _plain(
            f"demo: the generated year ({span}) is imported already: {len(year.export_plays):,} plays, nothing added"
        )
    else:
        _plain(f"demo: imported {imported.rows_loaded:,} plays of a generated year ({span}) as a Spotify data export")
    return year


@app.command("airflow-run")
@_friendly_errors
def airflow_run(
    demo: bool = typer.Option(
        None, "--demo/--no-demo", help="Force or forbid demo data (default: demo when no credentials are configured)."
    ),
    airflow_home: str = typer.Option(
        None,
        "--airflow-home",
        envvar="SPOTIFY_ELT_AIRFLOW_HOME",
        help="Airflow's home for the run: metadata DB, logs (default: .airflow in the project).",
    ),
) -> None:
    """Run the spotify_elt Airflow DAG once, end to end (what `make run` does).

    Shows each task as it starts and ends and a summary; Airflow's and dbt's whole output goes to a log file
    (printed in full when the run fails).
    """
    from pathlib import Path

    from pipelines import demo as demo_mode
    from pipelines.orchestration import runner as airflow_runner

    database = resolve_database()
    use_demo = (not demo_mode.spotify_credentials_configured()) if demo is None else demo
    year = _import_demo_year(database) if use_demo else None
    home = Path(airflow_home) if airflow_home else airflow_runner.DEFAULT_AIRFLOW_HOME
    with demo_mode.sample_spotify(history=year.recent_plays) if year else nullcontext():
        report = airflow_runner.run_dag_once(database, home, say=_plain)
    if not report.succeeded:
        _plain(f"{report.failure}. The full log ({report.log_file}) follows:")
        airflow_runner.print_log(report.log_file, console.file)
    else:
        for line in airflow_runner.summary(report, database, year):
            _plain(line)
    if year is not None:
        console.print(f"[bold yellow]{demo_mode.YEAR_BANNER}[/]", soft_wrap=True)
    if not report.succeeded:
        raise PipelineError(f"{report.failure}; the full log is above and in {report.log_file}")


@app.command("grant-roles")
@_friendly_errors
def grant_roles(
    admin_url: str = typer.Option(
        None,
        envvar="ADMIN_DATABASE_URL",
        help="A superuser URL of the same server (default: the embedded server's; else DATABASE_URL).",
    ),
    loader_role: str = typer.Option("loader", help="Role that writes raw and builds staging and analytics."),
    analyst_role: str = typer.Option("analyst", help="Read-only role: analytics only."),
    listener: str = typer.Option(
        None,
        "--listener",
        metavar="ACCOUNT",
        help="Instead: a read-only role that sees only this account's rows in analytics "
        "(password: LISTENER_PASSWORD; README: 'Listener roles').",
    ),
    listener_role: str = typer.Option(
        None, help="Name of the --listener role (default: listener_<account>, '-' as '_')."
    ),
) -> None:
    """Create least-privilege roles: `loader` and a read-only `analyst` (passwords: LOADER_/ANALYST_PASSWORD).

    With --listener ACCOUNT, only a read-only role for that listener, which sees their own rows alone.
    """
    from pipelines.database.roles import run_grant_listener, run_grant_roles

    if listener_role is not None and listener is None:
        raise ConfigError("--listener-role names the role of a --listener ACCOUNT: give --listener too")
    database = resolve_database()
    with _exclusive(database, "grant-roles"):
        if listener is not None:
            run_grant_listener(
                database, admin_url=admin_url, account=listener, listener_role=listener_role, console=console
            )
        else:
            run_grant_roles(
                database, admin_url=admin_url, loader_role=loader_role, analyst_role=analyst_role, console=console
            )


@app.command()
@_friendly_errors
def docs(
    port: int = typer.Option(8580, help="Port to serve on (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default keeps the docs on this machine."),
    generate: bool = typer.Option(
        True, "--generate/--no-generate", help="Run `dbt docs generate` first (reads the database's catalog)."
    ),
) -> None:
    """Generate the dbt docs (models, columns, tests, lineage) and serve them until Ctrl-C."""
    from pipelines.transform import docs_site

    if generate:
        docs_site.generate(resolve_database())
    docs_site.serve_until_interrupted(
        docs_site.target_dir(), host, port, announce=lambda url: console.print(f"dbt docs: {url} (Ctrl-C stops)")
    )
    console.print("stopped")


@app.command()
@_friendly_errors
def wrapped(
    year: int = typer.Option(None, "--year", help="Calendar year to wrap (default: this year)."),
    start: str = typer.Option(None, "--from", help="First day of a custom period, YYYY-MM-DD (with --to)."),
    end: str = typer.Option(None, "--to", help="Last day of the custom period, inclusive."),
    account: str = typer.Option(None, "--account", help="The listener to wrap (needed when there are several)."),
    user: str = typer.Option(
        None, "--user", help="Listener's Spotify user id instead of --account (e.g. as the analyst role)."
    ),
    output_dir: str = typer.Option(
        None, "--output-dir", "-o", help="Folder to write (default: wrapped/<period>, wrapped/<account>/<period>)."
    ),
) -> None:
    """Write your Wrapped: one offline HTML page plus PNG charts, read (only) from the analytics marts."""
    from datetime import UTC, datetime
    from pathlib import Path

    from pipelines.spotify.accounts import resolve_account
    from pipelines.wrapped import period, write_report

    chosen = period.resolve(year, start, end, today=datetime.now(UTC).date())
    database = resolve_database()
    listener = resolve_account(database, account, user_id=user)
    if listener is not None and listener.user_id is not None:
        user = listener.user_id
    folder = Path(output_dir) if output_dir else Path("wrapped", *([account] if account else []), chosen.slug)
    report = write_report(database, chosen, folder, user, account=listener.name if listener else None)
    whose = f" for {listener.name}" if listener is not None and account else ""
    console.print(
        f"[bold green]Wrapped {chosen.label}{whose}:[/] {report.data.minutes_listened:,} minutes, "
        f"{report.data.plays:,} plays. Open {report.html}"
    )


@app.command()
@_friendly_errors
def coverage(
    account: str = typer.Option(None, "--account", help="Only this listener (default: every account)."),
) -> None:
    """Per listener: the time covered by API loads and by imported exports, and the open gaps (last transform's)."""
    from pipelines.wrapped import coverage as report

    for line in report.render(report.coverage(resolve_database(), account)):
        typer.echo(line)


@accounts_app.command("add")
@_friendly_errors
def accounts_add(
    name: str = typer.Argument(..., help="The account's name: 1 to 40 of a-z, 0-9, '-' and '_'."),
    # Caught here rather than by typer, whose error would echo the stray argument: most likely a token.
    stray: list[str] = typer.Argument(None, hidden=True),  # noqa: B008 (typer's idiom)
    refresh_token_stdin: bool = typer.Option(
        False, "--refresh-token-stdin", help="Read the refresh token from standard input (one line)."
    ),
    authorised_at: str = typer.Option(
        None, "--authorised-at", help="When the listener authorised, YYYY-MM-DD (default: now); expiry is 6 months on."
    ),
    client_id: str = typer.Option(
        None,
        "--client-id",
        help="The Spotify app the listener authorised, if not SPOTIFY_CLIENT_ID's; "
        "its secret comes from SPOTIFY_CLIENT_SECRET_<ID>.",
    ),
) -> None:
    """Store a listener's existing refresh token (headless machines, migrations), checked with Spotify first.

    The token is read from standard input, never from the command line (where `ps` and shell history show it).
    """
    import sys
    from datetime import UTC, datetime

    from pipelines.spotify import accounts
    from pipelines.spotify.token_store import validate_name

    validate_name(name)
    if stray:
        raise ConfigError(
            "accounts add takes no refresh token as an argument (`ps` and shell history would show it): "
            "pass it on standard input with --refresh-token-stdin"
        )
    if not refresh_token_stdin:
        raise ConfigError(
            "pass the refresh token on standard input with --refresh-token-stdin (never as an argument), "
            f"or authorise in a browser: python -m pipelines auth --account {name}"
        )
    now = datetime.now(UTC)
    when = accounts.parse_authorised_at(authorised_at, now)
    token = accounts.read_refresh_token(sys.stdin)
    account = accounts.add_account(resolve_database(), name, token, authorised_at=when, now=now, client_id=client_id)
    _plain(
        f"added account {account.name}: Spotify user {account.user_id}, authorised {account.authorised_at:%Y-%m-%d}, "
        f"token stored encrypted; it expires on {account.expires_at:%Y-%m-%d}"
    )
    if when is None:
        _plain("authorised today, as far as this pipeline knows: if it was earlier, set --authorised-at to that day")


@accounts_app.command("list")
@_friendly_errors
def accounts_list() -> None:
    """One line per account: Spotify user, authorisation and expiry, last load, plays, open gaps, status."""
    from datetime import UTC, datetime

    from pipelines.spotify import accounts

    reports = accounts.account_reports(resolve_database())
    now = datetime.now(UTC)
    for line in accounts.render_reports(reports, now):
        typer.echo(line)
    for warning in accounts.expiry_warnings([report.account for report in reports], now):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@accounts_app.command("pause")
@_friendly_errors
def accounts_pause(name: str = typer.Argument(..., help="The account to stop loading.")) -> None:
    """Stop loading an account until it is resumed (its plays and token stay)."""
    from pipelines.spotify.accounts import pause_account
    from pipelines.spotify.token_store import AccountStore

    pause_account(AccountStore(resolve_database()), name)
    _plain(f"account {name} paused: loads skip it until `python -m pipelines accounts resume {name}`")


@accounts_app.command("resume")
@_friendly_errors
def accounts_resume(name: str = typer.Argument(..., help="The paused account to load again.")) -> None:
    """Load a paused account again (one that needs authorising: `auth --account NAME`)."""
    from pipelines.spotify.accounts import resume_account
    from pipelines.spotify.token_store import AccountStore

    resume_account(AccountStore(resolve_database()), name)
    _plain(f"account {name} is active: the next load reads it")


@app.command()
@_friendly_errors
def forget(
    name: str = typer.Argument(..., help="The account to forget (see `accounts list`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: for scripts, and stdin that is not a terminal."),
) -> None:
    """Delete a listener and all the pipeline holds of them, for good (Spotify's Developer Policy).

    In one transaction: the account and its refresh token, its plays, gaps and imported export in raw, its dlt
    state, and its rows in every staging and analytics table; then dlt's working dir of the account. Shows what
    goes and asks first (README: 'Forgetting a listener').
    """
    import sys

    from pipelines.spotify import forget as forgetting

    database = resolve_database()
    plan = forgetting.plan_forget(database, name)
    for line in plan.describe():
        _plain(line)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"nothing deleted: forgetting account {name} needs a confirmation, and standard input is not a "
                f"terminal; run `python -m pipelines forget {name} --yes` to confirm"
            )
        if not typer.confirm(f"Forget account {name} and delete all of this?", default=False, err=True):
            _plain("nothing deleted")
            raise typer.Exit(1)
    with _exclusive(database, "forget"):
        report = forgetting.forget(database, plan)
    for line in report.lines():
        _plain(line)


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
    from pipelines.database import embedded as embedded_postgres

    database = resolve_database()
    psql = embedded_postgres.psql_executable()
    # The password travels in the environment, not on the command line where `ps` would show it.
    os.environ["PGPASSWORD"] = database.password
    os.execv(psql, [psql, "-h", database.host, "-p", str(database.port), "-U", database.user, database.dbname])  # noqa: S606


@db_app.command("stop")
@_friendly_errors
def db_stop() -> None:
    """Stop the embedded server."""
    from pipelines.database import embedded as embedded_postgres

    stopped = embedded_postgres.stop_server(paths.DATA_DIR / "postgres")
    console.print("stopped" if stopped else "the embedded server was not running")
