"""`python -m pipelines forget NAME`: delete a listener and everything the pipeline holds of them.

Spotify's Developer Policy lets a user disconnect and have their data deleted. Forgetting an account deletes, in
one PostgreSQL transaction (all of it or, on any error, nothing):

- the account's row in `accounts.spotify_accounts`, its encrypted refresh token with it, and every other
  account of the same Spotify user (their plays are the same rows, and they would load them again);
- every row of the user in every table, in any schema, with a `user_id` column: the API's plays and gaps in
  `raw`, the imported export's plays and file records, dlt's staging copies in `raw_staging`, and each
  `staging` and `analytics` table dbt built (found in the catalog, so a new model is covered without a change
  here; views hold nothing);
- the accounts' dlt state (`_dlt_pipeline_state` rows of their pipelines: the cursor);
- catalog rows of the marts (`CATALOG_MARTS`: tracks, albums, artists, track credits) that no remaining play
  references, so a track only this user played (a local file's name, say) goes too.

Before it commits, every text and JSON column of every table is searched for the user id; what other
listeners' rows still mention (a playlist of the user's that someone else played) is reported, not deleted.
After the commit: dlt's working dirs of the accounts are removed, the single-listener refresh token
(`.dlt/secrets.toml`, the state dir's rotated token) when it is the user's, the user id is redacted from the
CLI's dbt logs and target files (compiled SQL names the users whose days changed), and the tables are vacuumed.

Not reached from here: database backups and WAL archives, and other machines' files (Airflow workers' dlt
dirs and task logs); README, "Forgetting a listener".
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from pipelines import paths
from pipelines.database import DatabaseUrl
from pipelines.errors import ConfigError, PipelineError, first_line
from pipelines.spotify.token_store import DEFAULT_ACCOUNT, SCHEMA, TABLE, Account, AccountStore

log = logging.getLogger(__name__)

USER_COLUMN = "user_id"
STATE_TABLE = "_dlt_pipeline_state"
REDACTED = "[forgotten]"
# Shorter ids would match too much unrelated text in dbt's logs (Spotify's ids are far longer).
MIN_REDACTED_LENGTH = 5
# Where the user id may sit in text: these types and arrays of them (compared as their text form).
TEXT_TYPES = ("text", "varchar", "bpchar", "name", "json", "jsonb")
# A Spotify user id is made of these; a mention is the id not run into more of them (`spotify:user:ID:...`).
_ID_CHARACTERS = "A-Za-z0-9._-"
_SYSTEM_SCHEMAS = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)'"
# What the pipeline's role may read, and change (a table an admin owns, such as the listener roles' map, is not).
_READABLE = "has_schema_privilege(n.oid, 'USAGE') and has_table_privilege(c.oid, 'SELECT')"
_WRITABLE = f"{_READABLE} and has_table_privilege(c.oid, 'DELETE')"
SCHEMA_ORDER = (SCHEMA, "raw", "raw_staging", "staging", "analytics")
LABELS = {
    f"{SCHEMA}.spotify_accounts": "the account and its encrypted refresh token",
    "raw.recently_played": "plays loaded from Spotify",
    "raw.gaps": "gaps recorded by loads",
    "raw.export_extended_plays": "imported export plays (extended streaming history)",
    "raw.export_account_plays": "imported export plays (account data)",
    "raw.export_files": "imported export files",
}


@dataclass(frozen=True)
class CatalogMart:
    """A mart without a user: a row stays while a row of `referenced_by` (table, column) references its `key`."""

    table: str
    key: str
    referenced_by: tuple[tuple[str, str], ...]


# In this order: a track goes before its credits, which go before their artists.
CATALOG_SCHEMA = "analytics"
CATALOG_MARTS = (
    CatalogMart("tracks", "track_id", (("plays", "track_id"),)),
    CatalogMart("track_artists", "track_id", (("tracks", "track_id"),)),
    CatalogMart("albums", "album_id", (("plays", "album_id"), ("tracks", "album_id"))),
    CatalogMart(
        "artists",
        "artist_id",
        (("plays", "primary_artist_id"), ("tracks", "primary_artist_id"), ("track_artists", "artist_id")),
    ),
)


@dataclass(frozen=True)
class ForgetPlan:
    """What forgetting `name` deletes, counted before it is confirmed."""

    name: str
    user_id: str | None
    accounts: tuple[Account, ...]  # the account named first, then the user's others
    counts: dict[str, int]  # "schema.table": rows of the user (and their dlt state)
    # Fingerprints of the single-listener tokens the accounts were taken from (`ensure_default_account`).
    legacy_fingerprints: frozenset[str] = frozenset()
    # Tables with a `user_id` column that the pipeline's role may not delete from (an admin's).
    out_of_reach: tuple[str, ...] = ()

    @property
    def account_names(self) -> list[str]:
        return [account.name for account in self.accounts]

    @property
    def pipeline_names(self) -> list[str]:
        from pipelines.load import pipeline_name

        return [pipeline_name(name) for name in self.account_names]

    def describe(self) -> list[str]:
        """The confirmation's lines: who, and what goes, table by table."""
        user = f"Spotify user {self.user_id}" if self.user_id else "Spotify user unknown (it never loaded)"
        others = [name for name in self.account_names if name != self.name]
        also = f"; also the user's other account{'s' if len(others) > 1 else ''} {', '.join(others)}" if others else ""
        lines = [f"forget account {self.name} ({user}){also}. This deletes, for good:"]
        lines += _count_lines(self.counts, self.pipeline_names)
        lines.append(f"  dlt's working dir of pipeline {', '.join(self.pipeline_names)}, on this machine")
        if self.user_id:
            lines.append("  catalog rows (tracks, albums, artists) that no other listener's play references")
        if DEFAULT_ACCOUNT in self.account_names or self.legacy_fingerprints:
            lines.append("  the single-listener refresh token (.dlt/secrets.toml), where it is this user's")
        if self.out_of_reach:
            lines.append(
                f"  but not in {', '.join(self.out_of_reach)}: the pipeline's role may not delete there (an admin can)"
            )
        return lines


@dataclass
class ForgetReport:
    """What forgetting did: rows deleted per table, files removed or redacted, and what still mentions the user."""

    plan: ForgetPlan
    deleted: dict[str, int] = field(default_factory=dict)
    mentions_left: dict[str, int] = field(default_factory=dict)
    removed_dirs: list[Path] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the CLI prints (no token, no key: counts, table names, paths)."""
        plan = self.plan
        who = f"Spotify user {plan.user_id}" if plan.user_id else "Spotify user unknown"
        lines = [f"forgot account {', '.join(plan.account_names)} ({who}); deleted:"]
        lines += _count_lines(self.deleted, plan.pipeline_names) or ["  no rows"]
        lines += [f"  removed dlt's working dir {path}" for path in self.removed_dirs]
        lines += [f"  {line}" for line in self.files]
        for table, rows in sorted(self.mentions_left.items()):
            lines.append(
                f"left as they are: {rows:,} row{'s' if rows != 1 else ''} of {table} still mention {plan.user_id}, "
                "in other listeners' data (e.g. their plays of a playlist of this user's)"
            )
        lines += [f"warning: {warning}" for warning in self.warnings]
        return lines


def plan_forget(database: DatabaseUrl, name: str, *, store: AccountStore | None = None) -> ForgetPlan:
    """What forgetting account `name` will delete, counted now (nothing is changed).

    Raises:
        UnknownAccountError: no account has that name (the message lists those there are).
    """
    store = store or AccountStore(database)
    account = store.get(name)
    others = [a for a in store.list() if a.user_id and a.user_id == account.user_id and a.name != name]
    accounts = (account, *others)
    names = [a.name for a in accounts]
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"select legacy_token_fingerprint from {TABLE} where name = any(%s) and legacy_token_fingerprint "  # noqa: S608
                "is not null",
                (names,),
            )
            legacy = frozenset(row[0] for row in cur.fetchall())
            plan = ForgetPlan(
                name, account.user_id, accounts, {TABLE: len(accounts)}, legacy, _out_of_reach(cur, account.user_id)
            )
            plan.counts.update(_state_rows(cur, plan.pipeline_names, delete=False))
            if plan.user_id:
                plan.counts.update(_user_rows(cur, plan.user_id, delete=False))
    finally:
        conn.close()
    return plan


def forget(
    database: DatabaseUrl,
    plan: ForgetPlan,
    *,
    pipelines_dir: Path | None = None,
    secrets_file: Path | None = None,
    token_file: Path | None = None,
    dbt_dirs: Sequence[Path] | None = None,
) -> ForgetReport:
    """Forget the accounts of `plan` (see the module docstring); the caller holds the pipeline lock.

    Args:
        database: The pipeline's database.
        plan: From `plan_forget`, as the user confirmed it.
        pipelines_dir: dlt's working dirs (default: this database's, `pipelines.load.default_pipelines_dir`).
        secrets_file: `.dlt/secrets.toml` (default: `paths.secrets_file()`).
        token_file: The state dir's rotated refresh token (default: `paths.rotated_token_file()`).
        dbt_dirs: Where the CLI's dbt writes logs and target files (default: the state dir's).

    Raises:
        ConfigError: the accounts changed since `plan` was made (nothing is deleted).
        PipelineError: the database refused a delete (nothing is deleted).
    """
    report = ForgetReport(plan)
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            _check_unchanged(cur, plan)
            cur.execute(f"delete from {TABLE} where name = any(%s)", (plan.account_names,))  # noqa: S608
            report.deleted[TABLE] = cur.rowcount
            report.deleted |= _state_rows(cur, plan.pipeline_names, delete=True)
            if plan.user_id:
                report.deleted |= _user_rows(cur, plan.user_id, delete=True)
                report.deleted |= _prune_catalog(cur)
                _refresh_materialized_views(cur)
                report.mentions_left = _mentions(cur, plan.user_id)
                literal = plan.user_id.replace("'", "''")
                for table in _out_of_reach(cur, plan.user_id):
                    report.warnings.append(
                        f"the pipeline's role may not delete from {table}: a superuser has to, with "
                        f"`delete from {table} where user_id = '{literal}'` (and drop the listener's role, if "
                        "it has one)"
                    )
    except psycopg2.Error as exc:  # e.g. a table the pipeline's role may not delete from
        raise PipelineError(f"nothing was forgotten: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        conn.close()
    log.debug("forgot account(s) %s", ", ".join(plan.account_names))
    report.removed_dirs = _remove_working_dirs(database, plan.pipeline_names, pipelines_dir)
    report.files += _forget_single_listener_token(plan, report, secrets_file, token_file)
    if plan.user_id and len(plan.user_id) < MIN_REDACTED_LENGTH:
        report.warnings.append(
            f"the user id {plan.user_id!r} is too short to find safely in dbt's log and target files: they are left"
        )
    elif plan.user_id:
        redacted = _redact_files(plan.user_id, dbt_dirs or _dbt_output_dirs())
        if redacted:
            report.files.append(f"redacted the user id in {redacted} of dbt's log and target files")
    _vacuum(database, [table for table, rows in report.deleted.items() if rows], report)
    return report


# -- what the transaction does ---------------------------------------------------------------------------------


def _check_unchanged(cur: Any, plan: ForgetPlan) -> None:
    """Lock the accounts; refuse when they are not the ones confirmed (one was added, removed or changed)."""
    cur.execute(f"select name, user_id from {TABLE} where name = any(%s) for update", (plan.account_names,))  # noqa: S608
    found = dict(cur.fetchall())
    if plan.user_id:
        cur.execute(f"select name, user_id from {TABLE} where user_id = %s for update", (plan.user_id,))  # noqa: S608
        found |= dict(cur.fetchall())
    expected = {account.name: account.user_id for account in plan.accounts}
    if found != expected:
        raise ConfigError(
            f"the accounts of {plan.name} changed while forgetting was being confirmed; nothing was deleted: "
            f"run `python -m pipelines forget {plan.name}` again"
        )


def _user_rows(cur: Any, user_id: str, *, delete: bool) -> dict[str, int]:
    """Rows of `user_id` in every table with a `user_id` column (accounts aside) that the pipeline's role may
    change, counted or deleted."""
    counts = {}
    for schema, table, writable in _user_tables(cur):
        if not writable:
            continue
        verb = sql.SQL("delete") if delete else sql.SQL("select count(*)")
        cur.execute(
            sql.SQL("{} from {} where {}::text = %s").format(
                verb, sql.Identifier(schema, table), sql.Identifier(USER_COLUMN)
            ),
            (user_id,),
        )
        rows = cur.rowcount if delete else cur.fetchone()[0]
        if rows:
            counts[f"{schema}.{table}"] = rows
    return counts


def _user_tables(cur: Any) -> list[tuple[str, str, bool]]:
    """Every table (partitioned ones once, not their partitions) with a `user_id` column, by schema and name, and
    whether the pipeline's role may delete from it."""
    cur.execute(
        f"""
        select n.nspname, c.relname, {_WRITABLE}
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_attribute as a on a.attrelid = c.oid
        where
            c.relkind in ('r', 'p')
            and not c.relispartition
            and a.attname = %s and a.attnum > 0 and not a.attisdropped
            and n.nspname <> %s
            and {_SYSTEM_SCHEMAS}
        order by 1, 2
        """,  # noqa: S608 (constants only)
        (USER_COLUMN, SCHEMA),
    )
    return cur.fetchall()


def _out_of_reach(cur: Any, user_id: str | None) -> tuple[str, ...]:
    """The tables with a `user_id` column that the pipeline's role may not delete from (none without a user)."""
    if not user_id:
        return ()
    return tuple(f"{schema}.{table}" for schema, table, writable in _user_tables(cur) if not writable)


def _state_rows(cur: Any, pipeline_names: list[str], *, delete: bool) -> dict[str, int]:
    """dlt's state rows of these pipelines, in every dataset that has a state table, counted or deleted."""
    cur.execute(
        f"""
        select n.nspname
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind = 'r' and c.relname = %s and {_SYSTEM_SCHEMAS} and {_WRITABLE}
        order by 1
        """,  # noqa: S608 (constants only)
        (STATE_TABLE,),
    )
    counts = {}
    for (schema,) in cur.fetchall():
        verb = sql.SQL("delete") if delete else sql.SQL("select count(*)")
        cur.execute(
            sql.SQL("{} from {} where pipeline_name = any(%s)").format(verb, sql.Identifier(schema, STATE_TABLE)),
            (pipeline_names,),
        )
        rows = cur.rowcount if delete else cur.fetchone()[0]
        if rows:
            counts[f"{schema}.{STATE_TABLE}"] = rows
    return counts


def _prune_catalog(cur: Any) -> dict[str, int]:
    """Delete the catalog marts' rows that no play references any more (a mart or column missing: skipped)."""
    counts = {}
    for mart in CATALOG_MARTS:
        relations = [(mart.table, mart.key), *mart.referenced_by]
        if not all(_has_column(cur, CATALOG_SCHEMA, table, column) for table, column in relations):
            continue
        unreferenced = sql.SQL(" and ").join(
            sql.SQL("not exists (select from {} as referencing where referencing.{} = mart.{})").format(
                sql.Identifier(CATALOG_SCHEMA, table), sql.Identifier(column), sql.Identifier(mart.key)
            )
            for table, column in mart.referenced_by
        )
        cur.execute(
            sql.SQL("delete from {} as mart where {}").format(sql.Identifier(CATALOG_SCHEMA, mart.table), unreferenced)
        )
        if cur.rowcount:
            counts[f"{CATALOG_SCHEMA}.{mart.table}"] = cur.rowcount
    return counts


def _has_column(cur: Any, schema: str, table: str, column: str) -> bool:
    cur.execute(
        "select exists (select from pg_attribute where attrelid = to_regclass(%s) and attname = %s and attnum > 0 "
        "and not attisdropped)",
        (f"{schema}.{table}", column),
    )
    return bool(cur.fetchone()[0])


def _refresh_materialized_views(cur: Any) -> None:
    """Materialized views with a `user_id` column cannot be deleted from: they are refreshed instead."""
    cur.execute(
        f"""
        select n.nspname, c.relname
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_attribute as a on a.attrelid = c.oid
        where
            c.relkind = 'm'
            and a.attname = %s and not a.attisdropped
            and pg_has_role(c.relowner, 'USAGE')
            and {_SYSTEM_SCHEMAS}
        order by 1, 2
        """,  # noqa: S608 (constants only)
        (USER_COLUMN,),
    )
    for schema, view in cur.fetchall():
        cur.execute(sql.SQL("refresh materialized view {}").format(sql.Identifier(schema, view)))


def _mentions(cur: Any, user_id: str) -> dict[str, int]:
    """Rows of every table and materialized view whose text or JSON still mentions `user_id`, by table."""
    cur.execute(
        f"""
        select n.nspname, c.relname, array_agg(a.attname::text order by a.attnum)
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_attribute as a on a.attrelid = c.oid
        join pg_type as t on t.oid = a.atttypid
        left join pg_type as element on element.oid = t.typelem and t.typcategory = 'A'
        where
            c.relkind in ('r', 'p', 'm')
            and not c.relispartition
            and a.attnum > 0 and not a.attisdropped
            and coalesce(element.typname, t.typname) = any(%s)
            and {_SYSTEM_SCHEMAS}
            and {_READABLE}
        group by 1, 2
        order by 1, 2
        """,  # noqa: S608 (constants only)
        (list(TEXT_TYPES),),
    )
    pattern = mention_pattern(user_id)
    found = {}
    for schema, table, columns in cur.fetchall():
        matches = sql.SQL(" or ").join(
            sql.SQL("{}::text ~* %(pattern)s").format(sql.Identifier(column)) for column in columns
        )
        cur.execute(
            sql.SQL("select count(*) from {} where {}").format(sql.Identifier(schema, table), matches),
            {"pattern": pattern},
        )
        rows = cur.fetchone()[0]
        if rows:
            found[f"{schema}.{table}"] = rows
    return found


def mention_pattern(user_id: str) -> str:
    """A regular expression (PostgreSQL's and Python's alike) for `user_id` as a whole id inside longer text."""
    return f"(?<![{_ID_CHARACTERS}]){re.escape(user_id)}(?![{_ID_CHARACTERS}])"


# -- after the commit: files --------------------------------------------------------------------------------------


def _remove_working_dirs(database: DatabaseUrl, pipeline_names: list[str], pipelines_dir: Path | None) -> list[Path]:
    """dlt's local working dirs of these pipelines (state, schemas, load packages with their rows)."""
    from pipelines.load import default_pipelines_dir

    base = pipelines_dir or default_pipelines_dir(database)
    removed = []
    for name in pipeline_names:
        path = base / name
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
    return removed


def _forget_single_listener_token(
    plan: ForgetPlan, report: ForgetReport, secrets_file: Path | None, token_file: Path | None
) -> list[str]:
    """Remove the single-listener refresh token (`.dlt/secrets.toml`, the rotated one) when it is the user's.

    It is when an account forgotten is `default`, or was taken from that token: left there, the next run would
    store it as the account `default` again and load the user anew.
    """
    from pipelines.spotify.secrets_file import (
        fingerprint,
        read_rotated_token,
        read_spotify_secrets,
        remove_refresh_token,
    )

    secrets_file = secrets_file or paths.secrets_file()
    token_file = token_file or paths.rotated_token_file()

    def theirs(token: object) -> bool:
        if not isinstance(token, str) or not token.strip():
            return False
        return DEFAULT_ACCOUNT in plan.account_names or fingerprint(token.strip()) in plan.legacy_fingerprints

    try:
        from_file = read_spotify_secrets(secrets_file).get("refresh_token")
    except (OSError, ValueError):
        from_file = None
    from_env = os.environ.get("SPOTIFY_REFRESH_TOKEN", "").strip()
    done = []
    configured = [token for token in (from_file, from_env) if theirs(token)]
    if token_file.exists() and any(read_rotated_token(token_file, token) for token in configured):
        token_file.unlink()
        done.append(f"removed the refresh token Spotify rotated, {token_file}")
    if theirs(from_file):
        remove_refresh_token(secrets_file)
        done.append(f"removed the refresh token from {secrets_file} (the app's client id and secret stay)")
    if theirs(from_env):
        report.warnings.append(
            "SPOTIFY_REFRESH_TOKEN still holds this listener's refresh token: remove it wherever it is set "
            "(shell, .env, Airflow); with no account left, a run would store it as the account default again"
        )
    return done


def _redact_files(user_id: str, directories: Iterable[Path]) -> int:
    """Replace `user_id` in the text files under `directories` (binary ones that hold it are deleted: they are
    caches dbt makes again); how many files were changed."""
    pattern = re.compile(mention_pattern(user_id).encode(), re.IGNORECASE)
    changed = 0
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
            try:
                content = path.read_bytes()
            except OSError:
                continue
            if not pattern.search(content):
                continue
            try:
                content.decode("utf-8")
            except UnicodeDecodeError:
                path.unlink()
            else:
                redacted = pattern.sub(REDACTED.encode(), content)
                temporary = path.with_name(f".{path.name}.forget.tmp")
                temporary.write_bytes(redacted)
                os.chmod(temporary, path.stat().st_mode & 0o777)
                os.replace(temporary, path)
            changed += 1
    return changed


def _dbt_output_dirs() -> list[Path]:
    """Where the CLI's dbt writes logs and target files (`transform.output_flags`: the state dir, unless
    `DBT_LOG_PATH` / `DBT_TARGET_PATH` say elsewhere)."""
    return [
        Path(os.environ.get("DBT_LOG_PATH") or paths.dbt_log_dir()),
        Path(os.environ.get("DBT_TARGET_PATH") or paths.dbt_target_dir()),
    ]


def _vacuum(database: DatabaseUrl, tables: list[str], report: ForgetReport) -> None:
    """VACUUM the tables rows were deleted from, so the rows' space is reclaimed now rather than some day."""
    if not tables:
        return
    conn = database.connect()
    conn.autocommit = True  # VACUUM cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for table in tables:
                schema, name = table.split(".", 1)
                cur.execute(sql.SQL("vacuum {}").format(sql.Identifier(schema, name)))
    except Exception as exc:  # the rows are deleted and committed: a failed VACUUM is autovacuum's to finish
        report.warnings.append(f"VACUUM failed ({first_line(exc)}); autovacuum will reclaim the space later")
    finally:
        conn.close()


# -- printing -----------------------------------------------------------------------------------------------------


def _count_lines(counts: dict[str, int], pipeline_names: list[str]) -> list[str]:
    """One aligned line per table with rows: table, count, and what its rows are when that is not obvious."""
    rows = sorted(((table, rows) for table, rows in counts.items() if rows), key=_table_order)
    if not rows:
        return []
    width = max(len(table) for table, _ in rows)
    digits = max(len(f"{count:,}") for _, count in rows)
    lines = []
    for table, count in rows:
        label = _label(table, pipeline_names)
        lines.append(f"  {table.ljust(width)}  {f'{count:,}'.rjust(digits)}{f'  {label}' if label else ''}")
    return lines


def _table_order(item: tuple[str, int]) -> tuple[int, str]:
    """Accounts first, then the layers in the order data flows through them (raw, staging, analytics), then
    anything else."""
    table = item[0]
    schema = table.split(".", 1)[0]
    return (SCHEMA_ORDER.index(schema) if schema in SCHEMA_ORDER else len(SCHEMA_ORDER), table)


def _label(table: str, pipeline_names: list[str]) -> str:
    if table.endswith(f".{STATE_TABLE}"):
        return f"dlt state (cursor) of pipeline {', '.join(pipeline_names)}"
    if table.startswith("raw_staging."):
        return "dlt's staging copy of a load"
    if table.startswith(f"{CATALOG_SCHEMA}.") and table.split(".", 1)[1] in {m.table for m in CATALOG_MARTS}:
        return "catalog rows no remaining play references"
    return LABELS.get(table, "")
