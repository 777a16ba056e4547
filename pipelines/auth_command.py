"""`python -m pipelines auth`: authorise once, store the refresh token, and say how to give it to Airflow."""

from __future__ import annotations

import os

import dlt
from rich.console import Console

from pipelines import paths
from pipelines.errors import ConfigError
from pipelines.spotify import settings


def _setting(env: str, secret_key: str) -> str:
    value = os.environ.get(env) or dlt.secrets.get(f"sources.spotify.{secret_key}")
    if not value:
        raise ConfigError(
            f"{env} is not set: create an app at https://developer.spotify.com/dashboard, then export {env} "
            f"(or put {secret_key} under [sources.spotify] in .dlt/secrets.toml)"
        )
    return str(value)


def run_auth(*, redirect_uri: str | None, open_browser: bool, timeout_seconds: float, console: Console) -> None:
    """Run the Authorization Code flow and write `.dlt/secrets.toml` (mode 0600)."""
    from pipelines.secrets_file import write_spotify_secrets
    from pipelines.spotify_auth import authorize

    client_id = _setting("SPOTIFY_CLIENT_ID", "client_id")
    client_secret = _setting("SPOTIFY_CLIENT_SECRET", "client_secret")
    redirect_uri = redirect_uri or settings.DEFAULT_REDIRECT_URI
    console.print(f"Waiting for Spotify to redirect to {redirect_uri} (register it in your app's settings).")
    refresh_token = authorize(
        client_id=client_id,
        client_secret=client_secret,
        accounts_url=os.environ.get("SPOTIFY_ACCOUNTS_URL") or settings.DEFAULT_ACCOUNTS_URL,
        redirect_uri=redirect_uri,
        open_browser=open_browser,
        timeout_seconds=timeout_seconds,
        on_url=lambda url: console.print(f"Open this URL to authorise:\n{url}", soft_wrap=True),
    )
    secrets_file = paths.secrets_file()
    write_spotify_secrets(secrets_file, client_id=client_id, client_secret=client_secret, refresh_token=refresh_token)
    console.print(f"[bold green]authorised:[/] refresh token saved to {secrets_file} (mode 0600, git-ignored).")
    console.print(
        "The CLI and `make run` read it from there. For an Airflow deployment, give the workers the same values "
        "as environment variables SPOTIFY_CLIENT_ID, SPOTIFY_CLIENT_SECRET and SPOTIFY_REFRESH_TOKEN (from your "
        "secrets manager), or ship .dlt/secrets.toml with the project; see README, 'Run on your Airflow'."
    )
