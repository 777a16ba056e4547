"""The raw tables the import writes: created on first use, and brought up to date in older databases.

- `raw.export_extended_plays` and `raw.export_account_plays`: one row per play, with the format's fields
  (`formats`), the user, the item key and the occurrence, keyed by `formats.primary_key`;
- `raw.export_files`: one row per file per import (its name, kind, plays read, first and last play).

A database that an earlier version created is migrated in place, idempotently: columns added since (the
account audiobook names, `occurrence`, `file_kind`) are added, and a primary key without `occurrence` is
replaced. Each step checks the catalog first, so an up-to-date database takes no table lock at all.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from psycopg2 import sql

from pipelines.database import DatabaseUrl
from pipelines.export.formats import (
    ACCOUNT,
    FILE_NUMBER_COLUMN,
    FORMATS,
    ITEM_KEY_COLUMN,
    OCCURRENCE_COLUMN,
    USER_COLUMN,
    ExportFormat,
    kind_of,
    primary_key,
)

RAW_SCHEMA = "raw"
FILES_TABLE = "export_files"
LOAD_ID_COLUMN = "_dlt_load_id"  # dlt's name and format, so dbt reads API and export loads alike

_FILES_COLUMNS = (
    (LOAD_ID_COLUMN, "text not null"),
    (USER_COLUMN, "text not null"),
    (FILE_NUMBER_COLUMN, "integer not null"),
    ("source_file", "text not null"),
    ("export_format", "text not null"),
    # Which of Spotify's files it is (`formats.FileKind`): dbt tells video plays and content types apart by it.
    ("file_kind", "text"),
    ("rows_read", "bigint not null"),
    ("first_played_at", "timestamptz"),
    ("last_played_at", "timestamptz"),
    ("imported_at", "timestamptz not null default now()"),
)


def raw_table(export_format: ExportFormat) -> sql.Identifier:
    """The raw table of a format's plays."""
    return sql.Identifier(RAW_SCHEMA, export_format.table)


def files_table() -> sql.Identifier:
    """The import log."""
    return sql.Identifier(RAW_SCHEMA, FILES_TABLE)


def ensure_tables(database: DatabaseUrl) -> None:
    """Create the raw export tables and the import log if missing, and migrate older ones."""
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW_SCHEMA)))
            for export_format in FORMATS:
                _ensure_plays_table(cur, export_format)
            _ensure_files_table(cur)
    finally:
        conn.close()


def upgrade_if_imported(database: DatabaseUrl) -> None:
    """Migrate the raw export tables of an earlier version before dbt reads them, if there are any.

    dbt's staging models read `occurrence` and `file_kind`, which an import adds to older tables; a listener
    who upgrades and does not import again would otherwise see every build fail. Nothing is created for a
    database that has never imported (a catalog look-up, a few milliseconds, when nothing is left to do).
    """
    conn = database.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f"{RAW_SCHEMA}.{FILES_TABLE}",))
            imported = cur.fetchone()[0] is not None
    finally:
        conn.close()
    if imported:
        ensure_tables(database)


def _play_columns(export_format: ExportFormat) -> list[tuple[str, str]]:
    return [
        (USER_COLUMN, "text not null"),
        (export_format.time_column, "timestamptz not null"),
        *((f.column, f.pg_type) for f in export_format.fields),
        (ITEM_KEY_COLUMN, "text not null"),
        # The straight COPY leaves it out: every row of a file whose keys are all distinct is occurrence 0.
        (OCCURRENCE_COLUMN, "integer not null default 0"),
        (FILE_NUMBER_COLUMN, "integer not null"),
        (LOAD_ID_COLUMN, "text not null"),
    ]


def _ensure_plays_table(cur: Any, export_format: ExportFormat) -> None:
    table = raw_table(export_format)
    columns = _play_columns(export_format)
    key = primary_key(export_format)
    cur.execute(
        sql.SQL("create table if not exists {} ({}, primary key ({}))").format(
            table, _definitions(columns), sql.SQL(", ").join(map(sql.Identifier, key))
        )
    )
    _add_missing_columns(cur, export_format.table, columns)
    _replace_primary_key(cur, export_format.table, key)
    # dbt's incremental models look for new loads. Rows are only ever appended, one load after the other, so
    # a BRIN index finds the newest loads' pages as well as a B-tree would, at a fraction of a B-tree's cost
    # to an import's COPY (bench/RESULTS.md).
    cur.execute(sql.SQL("drop index if exists {}").format(sql.Identifier(RAW_SCHEMA, f"{export_format.table}_load")))
    cur.execute(
        sql.SQL("create index if not exists {} on {} using brin ({})").format(
            sql.Identifier(load_index_name(export_format)), table, sql.Identifier(LOAD_ID_COLUMN)
        )
    )


def load_index_name(export_format: ExportFormat) -> str:
    """The BRIN index on the raw table's load id (in the raw schema)."""
    return f"{export_format.table}_load_brin"


def _ensure_files_table(cur: Any) -> None:
    cur.execute(
        sql.SQL("create table if not exists {} ({}, primary key ({}, {}))").format(
            files_table(),
            _definitions(_FILES_COLUMNS),
            sql.Identifier(LOAD_ID_COLUMN),
            sql.Identifier(FILE_NUMBER_COLUMN),
        )
    )
    if _add_missing_columns(cur, FILES_TABLE, _FILES_COLUMNS):
        _backfill_file_kinds(cur)


def _definitions(columns: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(ddl)) for name, ddl in columns)


def _add_missing_columns(cur: Any, table: str, columns: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bool:
    """Add the columns an older version did not create; whether any was added."""
    # pg_attribute rather than information_schema: a fraction of the time, on every import.
    cur.execute(
        "select attname from pg_attribute where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped",
        (f"{RAW_SCHEMA}.{table}",),
    )
    existing = {row[0] for row in cur.fetchall()}
    missing = [(name, ddl) for name, ddl in columns if name not in existing]
    for name, ddl in missing:
        # A new `not null` column always has a default here, so adding it rewrites nothing (PostgreSQL 11+).
        cur.execute(
            sql.SQL("alter table {} add column if not exists {} {}").format(
                sql.Identifier(RAW_SCHEMA, table), sql.Identifier(name), sql.SQL(ddl)
            )
        )
    return bool(missing)


def _replace_primary_key(cur: Any, table: str, key: tuple[str, ...]) -> None:
    """Make the table's primary key `key`, when it is another (an older version's, without `occurrence`)."""
    cur.execute(
        """
        select c.conname, array(
            select a.attname::text
            from unnest(c.conkey) with ordinality as k(attnum, position)
            join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = k.attnum
            order by k.position
        )
        from pg_constraint as c
        where c.conrelid = to_regclass(%s) and c.contype = 'p'
        """,
        (f"{RAW_SCHEMA}.{table}",),
    )
    current = cur.fetchone()
    if current is not None and tuple(current[1]) == key:
        return
    drop = sql.SQL("drop constraint {}, ").format(sql.Identifier(current[0])) if current is not None else sql.SQL("")
    # One statement: the table is never without a key. Widening a key cannot make two stored rows collide.
    cur.execute(
        sql.SQL("alter table {} {}add primary key ({})").format(
            sql.Identifier(RAW_SCHEMA, table), drop, sql.SQL(", ").join(map(sql.Identifier, key))
        )
    )


def _backfill_file_kinds(cur: Any) -> None:
    """The kinds of the files an older version logged, by their names. A renamed extended file counts as audio
    (as when it is imported now); a renamed account file as podcasts if its plays name podcasts, else music
    (that version read no account audiobook files)."""
    cur.execute(
        sql.SQL(
            "select distinct files.source_file, files.export_format, exists ("
            " select from {} as plays where plays._dlt_load_id = files._dlt_load_id"
            " and plays.file_number = files.file_number and plays.podcast_name is not null)"
            " from {} as files where files.file_kind is null"
        ).format(raw_table(ACCOUNT), files_table())
    )
    for source_file, export_format, names_podcasts in cur.fetchall():
        kind = kind_of(PurePosixPath(source_file).name)
        if kind is None:
            kind = (
                "extended_audio"
                if export_format == "extended"
                else ("account_podcast" if names_podcasts else "account_music")
            )
        cur.execute(
            sql.SQL("update {} set file_kind = %s where file_kind is null and source_file = %s").format(files_table()),
            (kind, source_file),
        )
