"""The dbt docs Cosmos serves in the api-server (`/cosmos/...`) answer only to users Airflow logged in.

The api-server's real FastAPI app (`create_app`), with SimpleAuthManager and the plugins found in a plugins
folder, answers real HTTP requests through Starlette's test client, in a subprocess with its own settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AIRFLOW_HOME

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "docs-viewer-password-41c3"

# Runs in the subprocess: log in as Airflow's UI and REST clients do, then ask for each docs file.
CLIENT = """
import json, sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app

client = TestClient(create_app())
login = client.post("/auth/token", json={"username": "viewer", "password": sys.argv[1]})
token = login.json()["access_token"]
files = ["dbt_docs_index.html", "manifest.json", "catalog.json"]
statuses = {"login": login.status_code, "api without login": client.get("/api/v2/dags").status_code}
for name in files:
    url = "/cosmos/spotify_history/" + name
    statuses[name + " without login"] = client.get(url).status_code
    for what, headers in (("a forged token", "x.y.z"), ("the bearer token", token)):
        statuses[name + " with " + what] = client.get(url, headers={"Authorization": "Bearer " + headers}).status_code
    statuses[name + " with the UI's cookie"] = client.get(url, cookies={"_token": token}).status_code
# Other spellings of the same path must not reach the catalog either (only the mount's own spelling routes).
for path in ("//cosmos/spotify_history/catalog.json", "/cosmos//spotify_history/catalog.json",
             "/cosmos/spotify_history//catalog.json", "/cosmos/./spotify_history/catalog.json"):
    response = client.get("http://testserver" + path)
    statuses["catalog spelled " + path] = "catalog" if response.text.strip() == '{"nodes":{}}' else "no catalog"
print(json.dumps(statuses))
"""


def docs_statuses(tmp_path: Path, plugins_folder: Path) -> dict[str, int | str]:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "index.html").write_text("<html><head></head><body>dbt docs</body></html>")
    (docs / "manifest.json").write_text("{}")
    (docs / "catalog.json").write_text('{"nodes": {}}')
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"viewer": PASSWORD}))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": json.dumps({"spotify_history": {"dir": str(docs)}}),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "docs-auth-test-secret",
    }
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, PASSWORD], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def statuses_with_the_plugin(airflow_db, tmp_path) -> dict[str, int | str]:
    return docs_statuses(tmp_path, REPO / "plugins")


def test_without_the_plugin_cosmos_serves_the_docs_to_anyone(airflow_db, tmp_path):
    statuses = docs_statuses(tmp_path, tmp_path / "no-plugins")

    assert statuses["api without login"] == 401
    assert statuses["catalog.json without login"] == 200


def test_with_the_plugin_the_docs_need_a_login_like_the_api(statuses_with_the_plugin):
    statuses = statuses_with_the_plugin
    assert statuses["login"] == 201
    assert statuses["api without login"] == 401
    for name in ("dbt_docs_index.html", "manifest.json", "catalog.json"):
        assert statuses[f"{name} without login"] == 401
        assert statuses[f"{name} with a forged token"] == 403
        assert statuses[f"{name} with the bearer token"] == 200
        assert statuses[f"{name} with the UI's cookie"] == 200
    assert {key: value for key, value in statuses.items() if key.startswith("catalog spelled")} == {
        f"catalog spelled {path}": "no catalog"
        for path in (
            "//cosmos/spotify_history/catalog.json",
            "/cosmos//spotify_history/catalog.json",
            "/cosmos/spotify_history//catalog.json",
            "/cosmos/./spotify_history/catalog.json",
        )
    }
