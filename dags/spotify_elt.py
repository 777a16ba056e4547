"""
### Spotify listening history: load, then transform

1. **load_recently_played** runs the dlt pipeline: new plays from Spotify's `recently-played` endpoint land in
   `raw.recently_played` (merged on `user_id, played_at`, so reruns never duplicate).
2. **transform** is the dbt project rendered by Cosmos: the source's freshness and tests, then every staging
   model and mart in `analytics`, each followed by its tests.
3. **publish_dbt_docs** runs `dbt docs generate` after a green build; Browse > dbt Docs shows the result.

Spotify only shows the **last 50 plays**: keep the schedule (`SPOTIFY_ELT_SCHEDULE`, hourly by default)
tighter than the time you take to play 50 tracks, and backfill older history from your Spotify data export.
Database: Airflow connection `spotify_postgres`. Spotify credentials: `SPOTIFY_*` variables or `.dlt/secrets.toml`.
"""

from datetime import datetime

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup
from cosmos.operators.local import DbtDocsLocalOperator

from pipelines import airflow_docs, airflow_watchers, orchestration, settings


@dag(
    dag_id=settings.DAG_ID,
    schedule=orchestration.schedule(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=orchestration.DEFAULT_ARGS,
    tags=["spotify", "dlt", "dbt"],
    doc_md=__doc__,
)
def spotify_elt() -> None:
    @task
    def load_recently_played() -> dict:
        return orchestration.load_task()

    transform = DbtTaskGroup(
        group_id="transform",
        project_config=orchestration.project_config(),
        profile_config=orchestration.profile_config(),
        execution_config=orchestration.execution_config(),
        render_config=orchestration.render_config(),
        default_args=orchestration.DBT_DEFAULT_ARGS,
        operator_args=orchestration.DBT_OPERATOR_ARGS,
    )
    if orchestration.watchers_in_triggerer():
        # the per-model watchers of the one `dbt build` wait in the triggerer, not on a worker each
        airflow_watchers.start_watchers_in_triggerer(transform)

    docs = DbtDocsLocalOperator(task_id="publish_dbt_docs", **airflow_docs.operator_args())

    load_recently_played() >> transform >> docs


spotify_elt()
