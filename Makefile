# The two commands the README promises: `make run` (the DAG once, end to end) and `make test` (every test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

# No telemetry from any tool, ever, in runs started from here.
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export RUNTIME__DLTHUB_TELEMETRY := false
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DO_NOT_TRACK := 1
export PROVIDERS__ENABLE_AIRFLOW_SECRETS := false

.PHONY: setup run test lint format lock psql db-stop clean roles docs bench bench-accounts

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip check
	touch $@

setup: $(VENV)/.installed  ## virtualenv with the pinned lock

run: setup  ## run the spotify_elt DAG once (embedded Postgres and demo data unless configured)
	$(BIN)/python -m pipelines airflow-run

test: setup  ## every test, against a real PostgreSQL
	$(BIN)/python -m pytest

DOCS_PORT ?= 8580
docs: setup  ## generate the dbt docs and serve them on http://127.0.0.1:$(DOCS_PORT) until Ctrl-C
	$(BIN)/python -m pipelines docs --port $(DOCS_PORT)

bench: setup  ## import-history vs a plain COPY of the same 1M plays, memory, dbt ratio (bench/RESULTS.md)
	$(BIN)/python bench/export_import.py

bench-accounts: setup  ## one hourly round for 100 listeners x 10k stored plays: CLI, DAG, dbt ratio (bench/RESULTS.md)
	nice -n 5 $(BIN)/python bench/accounts_scale.py --listeners 100 --plays-per-listener 10000

lint: setup  ## ruff on Python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock:  ## re-resolve requirements.in into requirements.txt in a throwaway venv
	rm -rf /tmp/spotify-lock && $(PYTHON) -m venv /tmp/spotify-lock
	/tmp/spotify-lock/bin/pip install --quiet --upgrade pip==25.3
	/tmp/spotify-lock/bin/pip install --quiet -r requirements.in
	/tmp/spotify-lock/bin/pip check
	( echo "# Resolved lock of requirements.in for Python 3.11 (make lock). Install with: pip install -r requirements.txt"; \
	  /tmp/spotify-lock/bin/pip freeze ) > requirements.txt

roles: setup  ## least-privilege roles: loader (writes raw, builds analytics) and read-only analyst
	$(BIN)/python -m pipelines grant-roles

psql: setup  ## open psql on the pipeline's database
	$(BIN)/python -m pipelines db psql

db-stop: setup  ## stop the embedded PostgreSQL
	$(BIN)/python -m pipelines db stop

clean:  ## remove local state (keeps .dlt/secrets.toml)
	rm -rf .airflow dbt_project/target dbt_project/logs .data/dbt
