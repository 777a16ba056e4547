"""Spotify credentials in dlt's `.dlt/secrets.toml`, under `[sources.spotify]`, and rotated refresh tokens.

Writes keep the rest of the file (other tables, comments, formatting) as it was, replace the
file atomically so a crash never leaves half a secrets file, and leave it readable by its owner
only (0600) from the moment it exists.

When Spotify rotates the refresh token and `.dlt/secrets.toml` cannot be written (a read-only code
mount), the new token goes to a file of the same shape in the state dir, with the fingerprint of the
configured token it descends from. The next run uses it only while that configured token is still the
one configured: after `auth` (or a new SPOTIFY_REFRESH_TOKEN) the stale file is ignored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.toml_document import TOMLDocument

SECTION = ("sources", "spotify")
PRIVATE_MODE = 0o600


def _load(path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except ParseError as exc:
        # tomlkit's message quotes the offending text, which may be part of a secret.
        raise ValueError(f"{path} is not valid TOML (line {exc.line}, column {exc.col}); fix or remove it") from None


def read_spotify_secrets(path: Path) -> dict[str, Any]:
    """The `[sources.spotify]` values of `path` as plain Python values; empty if the file or table is missing."""
    if not path.exists():
        return {}
    table: Any = _load(path)
    for key in SECTION:
        table = table.get(key) if isinstance(table, Mapping) else None
    if not isinstance(table, Mapping):
        return {}
    return dict(table.unwrap()) if hasattr(table, "unwrap") else dict(table)


def write_spotify_secrets(
    path: Path, *, client_id: str, client_secret: str, refresh_token: str, authorised_at: str | None = None
) -> None:
    """Set the app's credentials and the user's refresh token (and when they authorised, if known), creating the
    file (mode 0600) if needed."""
    values = {"client_id": client_id, "client_secret": client_secret, "refresh_token": refresh_token}
    _update(path, values if authorised_at is None else {**values, "authorised_at": authorised_at})


def update_refresh_token(path: Path, refresh_token: str) -> None:
    """Store a refresh token Spotify rotated, leaving the other values alone."""
    _update(path, {"refresh_token": refresh_token})


def remove_refresh_token(path: Path) -> None:
    """Remove the refresh token (and when it was authorised) from `path`, leaving the app's id and secret."""
    target = Path(os.path.realpath(path))
    document = _load(target)
    spotify: Any = document
    for key in SECTION:
        spotify = spotify.get(key) if isinstance(spotify, Mapping) else None
    if not isinstance(spotify, Mapping):
        return
    for key in ("refresh_token", "authorised_at"):
        spotify.pop(key, None)
    _write_private(target, tomlkit.dumps(document))


def fingerprint(token: str) -> str:
    """A one-way mark of a token, safe to store beside it: which configured token a rotated one replaces."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def write_rotated_token(path: Path, refresh_token: str, *, replaces: str) -> None:
    """Store a rotated refresh token that descends from the configured token with fingerprint `replaces`."""
    _update(path, {"refresh_token": refresh_token, "replaces": replaces})


def read_rotated_token(path: Path, configured: str | None) -> str | None:
    """The rotated token stored at `path` if it descends from `configured`, else None (absent, stale, unreadable)."""
    if not configured:
        return None
    try:
        stored = read_spotify_secrets(path)
    except (OSError, ValueError):
        return None
    token = stored.get("refresh_token")
    if not isinstance(token, str) or not token or stored.get("replaces") != fingerprint(configured):
        return None
    return token


def _update(path: Path, values: Mapping[str, str]) -> None:
    # Write through a symlink to its target rather than replacing the link with a plain file.
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    document = _load(target) if target.exists() else tomlkit.document()
    container: Any = document
    for depth, key in enumerate(SECTION):
        if key not in container:
            container[key] = tomlkit.table(is_super_table=depth < len(SECTION) - 1)
        container = container[key]
        if not isinstance(container, Mapping):
            raise ValueError(f"{path}: `{'.'.join(SECTION[: depth + 1])}` must be a table")
    for key, value in values.items():
        container[key] = value
    _write_private(target, tomlkit.dumps(document))


def _write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, the file never being more than owner-readable."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.chmod(temporary, PRIVATE_MODE)  # the umask could only have removed bits; make it exact
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.chmod(path, PRIVATE_MODE)
