"""
### Spotify listening history: load, then transform

1. **accounts_to_load** lists the active listeners (and warns of tokens expiring within 30 days), after
   migrating an older version's raw export tables.
2. **load_account**, mapped over them (one instance per account, labelled with its name, in the `spotify_api`
   pool), runs each account's dlt pipeline: new plays from Spotify's `recently-played` endpoint land in
   `raw.recently_played` (merged on `user_id, played_at`, so reruns never duplicate). A revoked token marks
   its account `needs_auth`; one account failing never holds the others back.
3. **transform**, the dbt project rendered by Cosmos, starts once the loads have ended, however they ended: the
   source's freshness and tests, then every staging model and mart in `analytics`, each followed by its tests.
4. **publish_dbt_docs** runs `dbt docs generate` after a green build (unless the published docs were generated from
   this deploy's manifest and database); Browse > dbt Docs shows the result.
5. **report_loads** says each account's outcome, and fails the run if any account's load failed.

Spotify only shows the **last 50 plays**: keep the schedule (`SPOTIFY_ELT_SCHEDULE`, hourly by default)
tighter than the time you take to play 50 tracks, and backfill older history from your Spotify data export.
Database: Airflow connection `spotify_postgres`. Accounts: `python -m pipelines accounts list`; the app's
credentials: `SPOTIFY_*` variables or `.dlt/secrets.toml`.
"""

from datetime import datetime

from airflow.sdk import dag, task
from airflow.task.trigger_rule import TriggerRule
from cosmos import DbtTaskGroup

from pipelines import orchestration, settings
from pipelines.orchestration import docs as airflow_docs
from pipelines.orchestration import watchers as airflow_watchers
from pipelines.orchestration.publish_docs import PublishDbtDocs


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
    def accounts_to_load() -> list[str]:
        return orchestration.accounts_task()

    @task(pool=orchestration.SPOTIFY_POOL, map_index_template="{{ task.op_kwargs['account'] }}")
    def load_account(account: str) -> dict:
        return orchestration.load_account_task(account)

    # what it reports was decided by the loads and their own retries: nothing to retry here
    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report_loads(accounts: list[str]) -> list[str]:
        return orchestration.report_loads_task(accounts)

    transform = DbtTaskGroup(
        group_id="transform",
        project_config=orchestration.project_config(),
        profile_config=orchestration.profile_config(),
        execution_config=orchestration.execution_config(),
        render_config=orchestration.render_config(),
        default_args=orchestration.DBT_DEFAULT_ARGS,
        operator_args=orchestration.DBT_OPERATOR_ARGS,
    )
    docs = PublishDbtDocs(task_id="publish_dbt_docs", **airflow_docs.operator_args())

    accounts = accounts_to_load()
    loads = load_account.expand(account=accounts)
    loads >> transform >> docs
    loads >> report_loads(accounts)
    orchestration.after_every_load(transform)
    if orchestration.watchers_in_triggerer():
        # after the wiring: a watcher's retry waits for the tasks upstream of it, so they must be known
        airflow_watchers.start_watchers_in_triggerer(transform)
        airflow_watchers.push_results_only(transform)


spotify_elt()
