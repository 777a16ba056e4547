"""The DAG's docs task: Cosmos' `dbt docs generate`, skipped when the published site is already current.

Kept apart from docs.py, which the CLI process imports and which must not load Cosmos.
"""

from __future__ import annotations

from typing import Any

from cosmos.operators.local import DbtDocsLocalOperator

from pipelines.orchestration import docs


class PublishDbtDocs(DbtDocsLocalOperator):
    """`dbt docs generate`, then `docs.publish`; nothing when the site was generated from this manifest and database."""

    def execute(self, context: Any, **kwargs: Any) -> Any:
        from pipelines import orchestration

        database = orchestration.database_from_connection()
        stamp = docs.source_stamp(orchestration.MANIFEST, f"{database.host}:{database.port}/{database.dbname}")
        if docs.is_current(stamp):
            self.log.info(
                "dbt docs in %s were generated from this deploy's manifest and database: left as they are",
                docs.docs_dir(),
            )
            return None
        result = super().execute(context, **kwargs)
        docs.write_stamp(stamp)
        return result
