"""dbt docs in a real browser: served by `python -m pipelines docs`, and inside Airflow through Cosmos' plugin.

Both read the fixture year's database, so the catalog has real tables; Chromium renders the docs app (it fetches
manifest.json and catalog.json and builds the page in JavaScript) and the rendered DOM is checked.
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import paths
from pipelines.orchestration import docs as airflow_docs
from pipelines.orchestration.runner import airflow_env
from pipelines.transform import docs_site
from tests.browser.chromium import Chromium, model_links, rendered
from tests.listening_year import year_database  # noqa: F401 - fixture

PLAYS_PAGE = "#!/model/model.spotify_history.plays"
SESSIONS_PAGE = "#!/model/model.spotify_history.listening_sessions"


def _models(unique_ids: list[str]) -> set[str]:
    return {unique_id.split(".")[-1] for unique_id in unique_ids if unique_id.startswith("model.")}


def assert_model_page(dom: str, site: str, model: str, dbname: str) -> None:
    """The page the docs app built for `model` shows what the site's manifest and catalog say about it."""
    status, body = _get(site + "manifest.json")
    assert status == 200
    manifest = json.loads(body)
    node = f"model.spotify_history.{model}"
    # The description's plain-text opening (before any Markdown), as the page renders it.
    opening = re.split(r"[`*_\[]", " ".join(manifest["nodes"][node]["description"].split()))[0][:40]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", rendered(dom))).split())
    assert len(opening) > 10 and opening in text
    assert f"{dbname}.analytics.{model}" in text  # from catalog.json: the built relation
    # Lineage: the models the manifest says it reads and is read by.
    assert model_links(dom, "depends_on") == _models(manifest["parent_map"][node])
    children = _models(manifest["child_map"][node])
    assert children and model_links(dom, "referenced_by") == children


def assert_plays_page_with_lineage(dom: str, site: str, dbname: str) -> None:
    assert_model_page(dom, site, "plays", dbname)
    assert "stg_spotify__plays" in model_links(dom, "depends_on")
    assert {"listening_history", "listening_plays"} <= model_links(dom, "referenced_by")


def _lines(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _wait_for_url(process: subprocess.Popen, lines: queue.Queue, deadline_s: float = 120) -> str:
    deadline = time.monotonic() + deadline_s
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, f"`pipelines docs` exited early: {''.join(seen)}"
            continue
        seen.append(line)
        match = re.search(r"dbt docs: (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"`pipelines docs` printed no URL: {''.join(seen)}")


def test_docs_command_serves_the_plays_model_and_its_lineage(year_database, chromium: Chromium, tmp_path):  # noqa: F811
    # dbt's own DBT_TARGET_PATH, honoured by the command: this test's docs, not the project's target/.
    env = {**os.environ, "DATABASE_URL": str(year_database), "DBT_TARGET_PATH": str(tmp_path / "target")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "docs", "--port", "0"],
        cwd=paths.PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # dbt's progress
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(process.stderr)
        url = _wait_for_url(process, lines)
        assert url.startswith("http://127.0.0.1:")

        assert (tmp_path / "target" / "catalog.json").is_file()
        assert_plays_page_with_lineage(chromium.dump_dom(url + PLAYS_PAGE), url, year_database.dbname)
        sessions = chromium.dump_dom(url + SESSIONS_PAGE)
        assert "session_gap_minutes" in rendered(sessions)
        # sessions read listening_plays, and the changed days from the loads (macros/changed_days.sql)
        assert model_links(sessions, "depends_on") == {
            "listening_plays",
            "stg_spotify__plays",
            "int_export_plays_deduplicated",
        }

        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert "stopped" in "".join(rest)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture
def api_server(year_database, airflow_db: Path, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """A real Airflow api-server (UI and public API) with the environment `airflow_runner` gives Airflow."""
    env = airflow_env(year_database, airflow_db)
    # The UI logs everyone in as admin: a local, loopback-only server for this test.
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    port = _free_port()
    log = (tmp_path / "api-server.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "api-server", "--apps", "core", "--workers", "1"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _get(base + "/api/v2/monitor/health")[0] != 200:
            assert process.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the api-server did not come up in 120 s"
            time.sleep(0.5)
        yield base
    finally:
        # The server's own process group: uvicorn's worker goes with it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_airflow_ui_shows_the_published_docs(
    year_database,  # noqa: F811
    api_server: str,
    airflow_db: Path,
    chromium: Chromium,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # What the DAG's docs task does: dbt docs generate into a project copy's target/, then Cosmos calls publish
    # with the api-server's configuration.
    docs_site.generate(year_database, tmp_path / "project" / "target")
    monkeypatch.setenv(airflow_docs.PROJECTS_ENV, airflow_env(year_database, airflow_db)[airflow_docs.PROJECTS_ENV])
    airflow_docs.publish(str(tmp_path / "project"))

    # Airflow lists the view under Browse, from the plugin's configuration.
    status, body = _get(api_server + "/auth/token")
    assert status == 201
    token = json.loads(body)["access_token"]
    status, body = _get(api_server + "/api/v2/plugins", token)
    assert status == 200
    views = [view for plugin in json.loads(body)["plugins"] for view in plugin["external_views"]]
    [view] = [view for view in views if view["name"] == airflow_docs.DOCS_NAME]
    assert (view["category"], view["href"]) == ("Browse", f"/cosmos/{airflow_docs.DOCS_SLUG}/dbt_docs_index.html")

    # And the page behind it renders the docs the DAG published.
    page = api_server + view["href"]
    site = page.rsplit("/", 1)[0] + "/"  # the plugin serves manifest.json and catalog.json beside the page
    assert_plays_page_with_lineage(chromium.dump_dom(page + PLAYS_PAGE), site, year_database.dbname)
