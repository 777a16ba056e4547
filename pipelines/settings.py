"""Names shared by the DAG, the CLI and the tests (kept import-light: no Airflow, dlt or dbt here)."""

DAG_ID = "spotify_elt"
# One Airflow connection holds the database for both dlt and dbt.
POSTGRES_CONN_ID = "spotify_postgres"
DEFAULT_SCHEDULE = "@hourly"
