"""Every command, given a missing or malformed setting, exits 1 with one line naming it and saying how to fix it.

The real CLI runs as a subprocess (`python -m pipelines ...`), several at once to keep this quick; each case
then asserts on the exit code and stderr: exactly one `error:` line, last, with the expected words, no
traceback, and no password or Spotify secret echoed back.
"""

from __future__ import annotations

import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.database import DatabaseUrl, drop_database, ensure_role_and_database
from tests.conftest import SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN, TEST_ROLE
from tests.reliability.helpers import assert_one_clear_error
from tests.reliability.report import record
from tests.test_cli import cli_env, run_cli

ONE_LINE = "exit 1 with one line naming the setting and the fix; no traceback"
# Every command that needs the database; `docs` would serve forever if it got that far, hence the timeout.
DATABASE_COMMANDS = {
    "load": ["load"],
    "run": ["run"],
    "transform": ["transform"],
    "import-history": ["import-history", "{tmp}"],
    "grant-roles": ["grant-roles"],
    "airflow-run": ["airflow-run"],
    "docs": ["docs"],
    "wrapped": ["wrapped"],
    "db start": ["db", "start"],
    "db url": ["db", "url"],
    "db psql": ["db", "psql"],
}
MALFORMED_URLS = {
    "not a URL": ("not a url", ["DATABASE_URL has scheme '(none)'", "postgresql://user:password@host:5432/dbname"]),
    "no password": ("postgresql://spotify@127.0.0.1:5432/spotify", ["DATABASE_URL is missing the password"]),
    "port out of range": ("postgresql://u:p4ss-w0rd@127.0.0.1:99999/db", ["DATABASE_URL is not a valid URL"]),
    "other scheme": ("mysql://u:p4ss-w0rd@127.0.0.1/db", ["DATABASE_URL has scheme 'mysql'"]),
}
NOWHERE_URLS = {
    "nothing listening": ("postgresql://u:p4ss-w0rd@127.0.0.1:1/db", ["cannot connect", "Connection refused"]),
    "unknown host": ("postgresql://u:p4ss-w0rd@db.invalid:5432/db", ["cannot connect", "db.invalid"]),
    "no such database": ("{admin_no_db}", ["cannot connect", "does not exist"]),
}
# Cases that need a working database get one each (they take the pipeline lock, and run side by side).
WORKING_DATABASE = "{a working database}"
WORKING_PASSWORD = "{its password}"
BROKEN_TOML = '[sources.spotify]\nclient_id = "abc\nclient_secret = "a-secret-in-a-broken-file"\n'


@dataclass
class Case:
    args: list[str]
    env: dict[str, str]
    expected: list[str]
    row: str
    secrets: list[str] = field(default_factory=list)


def cases(tmp: Path, admin_no_db: str) -> dict[str, Case]:
    good_db = {"DATABASE_URL": WORKING_DATABASE}
    spotify = {
        "SPOTIFY_CLIENT_ID": "an-app",
        "SPOTIFY_CLIENT_SECRET": SPOTIFY_CLIENT_SECRET,
        "SPOTIFY_REFRESH_TOKEN": SPOTIFY_REFRESH_TOKEN,
    }
    found: dict[str, Case] = {}
    malformed, nowhere = list(MALFORMED_URLS.items()), list(NOWHERE_URLS.items())
    for index, (command, args) in enumerate(DATABASE_COMMANDS.items()):
        # Each command meets one malformed URL and one pointing nowhere, in turn, so every kind meets several.
        args = [arg.format(tmp=tmp) for arg in args]
        for name, (url, expected) in [malformed[index % len(malformed)]]:
            found[f"{command}: DATABASE_URL {name}"] = Case(
                args,
                {"DATABASE_URL": url},
                expected,
                "Malformed DATABASE_URL (not a URL, no password, bad port, other scheme), each command meets one",
                ["p4ss-w0rd"],
            )
        for name, (url, expected) in [nowhere[index % len(nowhere)]]:
            url = url.format(admin_no_db=admin_no_db)
            found[f"{command}: DATABASE_URL {name}"] = Case(
                args,
                {"DATABASE_URL": url},
                [*expected, "Check DATABASE_URL"],
                "DATABASE_URL pointing nowhere (refused, unknown host, missing database), each command meets one",
                ["p4ss-w0rd", "trust-pw-7d"],
            )
    for command in ("load", "run"):
        found[f"{command}: no Spotify credentials"] = Case(
            [command],
            good_db,
            [
                "Spotify credentials missing (SPOTIFY_CLIENT_ID, SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN)",
                "python -m pipelines auth",
            ],
            "Spotify credentials missing or incomplete",
        )
    found["load: no refresh token"] = Case(
        ["load"],
        {**good_db, **spotify, "SPOTIFY_REFRESH_TOKEN": ""},
        ["(SPOTIFY_REFRESH_TOKEN)", "auth"],
        "Spotify credentials missing or incomplete",
        [SPOTIFY_CLIENT_SECRET],
    )
    for setting, value in (("SPOTIFY_API_URL", "api.spotify.com/v1"), ("SPOTIFY_ACCOUNTS_URL", "ftp://accounts")):
        found[f"load: {setting} {value}"] = Case(
            ["load"],
            {**good_db, **spotify, setting: value},
            [f"{setting} must be an http(s) URL"],
            "Malformed SPOTIFY_API_URL or SPOTIFY_ACCOUNTS_URL",
            [SPOTIFY_CLIENT_SECRET, SPOTIFY_REFRESH_TOKEN],
        )
    found["auth: no SPOTIFY_CLIENT_ID"] = Case(
        ["auth", "--no-browser", "--timeout", "1"],
        {},
        ["SPOTIFY_CLIENT_ID is not set", "developer.spotify.com"],
        "`auth` without SPOTIFY_CLIENT_ID or SPOTIFY_CLIENT_SECRET",
    )
    found["auth: no SPOTIFY_CLIENT_SECRET"] = Case(
        ["auth", "--no-browser", "--timeout", "1"],
        {"SPOTIFY_CLIENT_ID": "an-app"},
        ["SPOTIFY_CLIENT_SECRET is not set"],
        "`auth` without SPOTIFY_CLIENT_ID or SPOTIFY_CLIENT_SECRET",
    )
    for uri in ("http://localhost:8888/callback", "https://127.0.0.1:8888/callback", "127.0.0.1:8888"):
        found[f"auth: SPOTIFY_REDIRECT_URI {uri}"] = Case(
            ["auth", "--no-browser", "--timeout", "1"],
            {**spotify, "SPOTIFY_REDIRECT_URI": uri},
            ["SPOTIFY_REDIRECT_URI must be an http:// URL on 127.0.0.1", "http://127.0.0.1:8888/callback"],
            "Wrong SPOTIFY_REDIRECT_URI (localhost, https, no scheme)",
            [SPOTIFY_CLIENT_SECRET],
        )
    for command in (["load"], ["auth", "--no-browser", "--timeout", "1"]):
        found[f"{command[0]}: broken .dlt/secrets.toml"] = Case(
            command,
            {**good_db, "DLT_PROJECT_DIR": str(tmp / "broken")},
            ["secrets.toml is not valid TOML (line 2"],
            "Broken .dlt/secrets.toml (not TOML)",
            ["a-secret-in-a-broken-file"],
        )
    found["grant-roles: ADMIN_DATABASE_URL malformed"] = Case(
        ["grant-roles"],
        {**good_db, "ADMIN_DATABASE_URL": "postgres:/admin"},
        ["ADMIN_DATABASE_URL is missing"],
        "ADMIN_DATABASE_URL malformed or not a superuser",
    )
    found["grant-roles: admin is not a superuser"] = Case(
        ["grant-roles"],
        good_db,
        ["grant-roles needs a superuser connection", "ADMIN_DATABASE_URL"],
        "ADMIN_DATABASE_URL malformed or not a superuser",
        [WORKING_PASSWORD],
    )
    return found


@pytest.fixture(scope="module")
def setup(postgres_admin: DatabaseUrl, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("bad-config")
    (tmp / "broken" / ".dlt").mkdir(parents=True)
    (tmp / "broken" / ".dlt" / "secrets.toml").write_text(BROKEN_TOML)
    admin_no_db = DatabaseUrl(postgres_admin.user, "trust-pw-7d", postgres_admin.host, postgres_admin.port, "no_db")
    return tmp, cases(tmp, str(admin_no_db))


@pytest.fixture(scope="module")
def results(setup, postgres_admin: DatabaseUrl, test_role_password: str) -> dict[str, subprocess.CompletedProcess]:
    tmp, all_cases = setup
    databases = []
    for case in all_cases.values():
        if case.env.get("DATABASE_URL") == WORKING_DATABASE:
            dbname = f"test_{uuid.uuid4().hex[:12]}"
            databases.append(dbname)
            database = ensure_role_and_database(postgres_admin, TEST_ROLE, test_role_password, dbname)
            case.env = {**case.env, "DATABASE_URL": str(database)}
        case.secrets = [test_role_password if secret == WORKING_PASSWORD else secret for secret in case.secrets]

    def run(case: Case) -> subprocess.CompletedProcess:
        return run_cli(cli_env(tmp, COLUMNS="500", **case.env), *case.args, timeout=90)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield dict(zip(all_cases, pool.map(run, all_cases.values()), strict=True))
    finally:
        for dbname in databases:
            drop_database(postgres_admin, dbname)


CASE_IDS = list(cases(Path("unused"), "unused"))


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_setting_exits_1_with_one_clear_line(case_id, setup, results):
    case = setup[1][case_id]
    result = results[case_id]

    assert result.returncode == 1, result.stderr[-2000:]
    assert_one_clear_error(result.stderr, *case.expected)
    output = result.stdout + result.stderr
    assert [secret for secret in case.secrets if secret in output] == []
    record("Configuration", case.row, tried=1, result=ONE_LINE)
