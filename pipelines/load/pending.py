"""Finish what an interrupted load left behind, before a run extracts anything new.

dlt keeps each run's data as a load package in its working directory and moves it, file by file, through
extract, normalize and load, so a killed run leaves a package that a later run can finish. dlt's own `run`
does finish it, but then stops without extracting (the plays fetched since would wait a whole schedule
interval), and two crash windows leave a package it can never finish (dlt 1.31), found by SIGKILLing the
loader at every file operation (tests/reliability/test_crash_load.py):

- killed after an insert job committed in PostgreSQL but before dlt noted it, the job runs again and fails
  on its own rows (`duplicate key ... _dlt_id`);
- killed after the package was marked complete but before it was moved to `loaded/`, every later run fails
  with `LoadPackageAlreadyCompleted`;
- killed after normalize moved its output to `load/normalized/` but before it deleted its input, every later
  run normalizes the input again and fails to move it (`Directory not empty`).

`finish_pending_packages` settles these from the working directory and the database, then lets dlt load
the rest.
"""

from __future__ import annotations

import logging
import os

import dlt
from dlt.common.storages.load_package import ParsedLoadJobFileName
from psycopg2 import sql

from pipelines.database import DatabaseUrl

log = logging.getLogger(__name__)


def finish_pending_packages(pipeline: dlt.Pipeline, database: DatabaseUrl) -> list[str]:
    """Load every package an interrupted run left, and return their load ids (none: nothing was pending)."""
    _drop_normalized_inputs(pipeline)
    _archive_completed_packages(pipeline)
    if not pipeline.has_pending_data:
        return []
    _settle_committed_jobs(pipeline, database)
    pending = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
    log.warning("finishing %d load package(s) an interrupted run left behind", pending)
    info = pipeline.run()  # with pending packages and no data, dlt normalizes and loads them, then returns
    if info is None:
        return []
    info.raise_on_failed_jobs()
    return list(info.loads_ids)


def _drop_normalized_inputs(pipeline: dlt.Pipeline) -> None:
    """Delete extracted packages whose normalized output already exists, as normalize does right after."""
    extracted = pipeline._get_normalize_storage().extracted_packages
    storage = pipeline._get_load_storage()
    if not storage.is_storage_ready():
        return
    done = {*storage.list_normalized_packages(), *storage.list_loaded_packages()}
    for load_id in extracted.list_packages():
        if load_id in done:
            log.warning("removing the input of load package %s: it was normalized before the run stopped", load_id)
            extracted.delete_package(load_id)


def _archive_completed_packages(pipeline: dlt.Pipeline) -> None:
    """Move packages that were loaded and marked complete, but not yet filed, to `loaded/`.

    dlt records the load in the destination, writes the completion marker, then moves the package; its
    data is in the database once the marker exists, so the move is all that is left.
    """
    storage = pipeline._get_load_storage()  # no public API reaches a package's completion marker
    if not storage.is_storage_ready():
        return
    for load_id in storage.list_normalized_packages():
        if storage.normalized_packages.is_package_completed(load_id):
            log.warning("filing load package %s: it was loaded, but the run stopped before filing it", load_id)
            storage.storage.rename_tree(
                storage.get_normalized_package_path(load_id), storage.get_loaded_package_path(load_id)
            )


def _settle_committed_jobs(pipeline: dlt.Pipeline, database: DatabaseUrl) -> None:
    """Mark started insert jobs whose rows the database already holds as done, the way dlt marks its own.

    dlt notes a job that finished in the destination as a "pending transition" and replays that on restart,
    so the job is not run twice; a kill between the commit and that note leaves the job looking unfinished.
    An insert job runs in one transaction and stamps every row with its package's load id, so rows with that
    load id in the job's table mean it committed. SQL jobs (the merge) are left alone: they run in one
    transaction and may safely run again.
    """
    storage = pipeline._get_load_storage()
    packages = storage.normalized_packages
    schema = pipeline.default_schema
    for load_id in storage.list_normalized_packages():
        for job_path in packages.list_started_jobs(load_id):
            file_name = os.path.basename(job_path)
            job = ParsedLoadJobFileName.parse(file_name)
            if job.file_format == "sql" or packages.load_pending_transition(load_id, file_name) is not None:
                continue
            table = schema.tables.get(job.table_name, {})
            # Merge tables are loaded into the staging dataset first; the rest straight into the dataset.
            dataset = f"{pipeline.dataset_name}_staging" if table.get("write_disposition") == "merge" else None
            if _holds_rows_of(database, dataset or pipeline.dataset_name, job.table_name, load_id):
                log.warning("job %s of load package %s had committed before the run stopped", file_name, load_id)
                packages.save_pending_transition(load_id, file_name, "completed", None)


def _holds_rows_of(database: DatabaseUrl, schema: str, table: str, load_id: str) -> bool:
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',))
            if cur.fetchone()[0] is None:
                return False
            cur.execute(
                sql.SQL("select exists (select from {}.{} where _dlt_load_id = %s)").format(
                    sql.Identifier(schema), sql.Identifier(table)
                ),
                (load_id,),
            )
            return bool(cur.fetchone()[0])
    finally:
        conn.close()
