"""Own your Spotify listening history: extract and load with dlt, transform with dbt, orchestrate with Airflow."""
