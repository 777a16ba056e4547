"""The listeners of the sample server's apps: who they are on Spotify, and a handle for scripting each one.

A household running one pipeline has one app (one client id and secret), or a second one past 5 listeners,
and several listeners who authorised it. Each has their own refresh token, play history and `GET /v1/me`; faults can be
aimed at one of them while the others carry on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipelines.sample_server.catalog import spotify_id
from pipelines.sample_server.history import PlayHistory
from pipelines.spotify.settings import SCOPE

if TYPE_CHECKING:
    from pipelines.sample_server.recording import RecordedRequest
    from pipelines.sample_server.server import RequestHold, SampleSpotifyServer


def default_account_id(user_id: str) -> str:
    """A stable 22-character id for `account_id`, derived from the user id (Spotify's own format is not documented)."""
    return spotify_id("account", user_id)


def default_display_name(user_id: str) -> str:
    return user_id.replace("-", " ").replace("_", " ").title()


class Listener:
    """One listener of the app on a SampleSpotifyServer: made by `server.add_listener(...)`.

    Every method acts on this listener alone: their plays, their refresh token, faults aimed at their
    requests. The server's methods of the same names do the same given `user=`.
    """

    def __init__(self, server: SampleSpotifyServer, user_id: str, account_id: str, display_name: str) -> None:
        self._server = server
        self.user_id = user_id
        self.account_id = account_id
        self.display_name = display_name
        self._history = PlayHistory()

    def __repr__(self) -> str:
        # No token here: test failures print these.
        return f"Listener(user_id={self.user_id!r}, account_id={self.account_id!r})"

    def me(self, api_url: str) -> dict[str, Any]:
        """The body of `GET /v1/me` for this listener."""
        return {
            "account_id": self.account_id,
            "display_name": self.display_name,
            "external_urls": {"spotify": f"https://open.spotify.com/user/{self.user_id}"},
            "followers": {"href": None, "total": 0},
            "href": f"{api_url}/users/{self.user_id}",
            "id": self.user_id,
            "images": [],
            "type": "user",
            "uri": f"spotify:user:{self.user_id}",
        }

    # --- plays --------------------------------------------------------------------------------

    def add_play(self, track: dict[str, Any], played_at: datetime, context: dict[str, Any] | None = None) -> dict:
        """Record a play of this listener (timezone-aware `played_at`); returns the API item."""
        return self._history.add(track, played_at, context)

    def add_plays(self, items: Iterable[tuple[dict[str, Any], datetime, dict[str, Any] | None]]) -> None:
        """Record many plays of this listener, e.g. `demo_history(now)`; all of them or, if one is invalid, none."""
        self._history.add_many(items)

    @property
    def plays(self) -> list[dict[str, Any]]:
        """Every play of this listener ever added, newest first, including those the API no longer shows."""
        return self._history.all_newest_first()

    @property
    def play_count(self) -> int:
        """How many plays this listener has stored (cheaper than len(plays))."""
        return len(self._history)

    # --- tokens -------------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The app this listener authorised: their refresh token works only with its credentials."""
        return self._server._accounts.app_of(self.user_id)

    @property
    def current_refresh_token(self) -> str:
        """This listener's refresh token that works right now (unless revoked or expired)."""
        return self._server._accounts.current_refresh_token(self.user_id)

    @property
    def authorised_at(self) -> datetime:
        """When this listener last authorised the app; the refresh token expires 6 months later."""
        return self._server._accounts.authorised_at(self.user_id)

    @property
    def refresh_token_expires_at(self) -> datetime:
        """From this moment (by the server's clock) refreshing answers invalid_grant."""
        return self._server._accounts.expires_at(self.user_id)

    @property
    def refresh_returns(self) -> str:
        """REFRESH_OMITS, REFRESH_REPEATS or REFRESH_ROTATES: what a refresh answers about the refresh token."""
        return self._server._accounts.refresh_returns(self.user_id)

    @refresh_returns.setter
    def refresh_returns(self, mode: str) -> None:
        self._server._accounts.set_refresh_returns(self.user_id, mode)

    @property
    def issued_access_tokens(self) -> list[str]:
        """Every access token handed out for this listener so far."""
        return self._server._accounts.issued_access_tokens(self.user_id)

    def rotate_refresh_token(self, new_token: str | None = None) -> str:
        """The next successful refresh returns a new refresh token (`new_token`, or a random one), returned here."""
        return self._server.rotate_refresh_token(new_token, user=self.user_id)

    def revoke_refresh_token(self) -> None:
        """This listener removed the app's access: refreshing fails with invalid_grant until `reauthorize()`."""
        self._server.revoke_refresh_token(user=self.user_id)

    def reauthorize(self, *, refresh_token: str | None = None, authorised_at: datetime | None = None) -> str:
        """This listener authorises the app again: returns their new refresh token (see the server's method)."""
        return self._server.reauthorize(user=self.user_id, refresh_token=refresh_token, authorised_at=authorised_at)

    def grant_refresh_token_scope(self, scope: str) -> None:
        """Refreshing this listener's token now grants only `scope`."""
        self._server.grant_refresh_token_scope(scope, user=self.user_id)

    def issue_access_token(self, scope: str = SCOPE) -> str:
        """A valid access token acting for this listener, without the token endpoint."""
        return self._server.issue_access_token(scope, user=self.user_id)

    def expire_access_tokens(self) -> None:
        """This listener's access tokens issued so far now answer 401 "The access token expired"."""
        self._server.expire_access_tokens(user=self.user_id)

    def sign_in(self) -> None:
        """This listener is the one signed in to the browser: `/authorize` codes are theirs from now on."""
        self._server.sign_in(self.user_id)

    # --- requests and faults ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far that acted for this listener, oldest first."""
        return [request for request in self._server.requests if request.user == self.user_id]

    def enqueue_fault(
        self,
        path: str,
        status: int,
        *,
        body: str | bytes | dict | None = None,
        headers: Mapping[str, Any] | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer this listener's next `times` requests to `path` with this response (see the server's method)."""
        self._server.enqueue_fault(path, status, body=body, headers=headers, times=times, delay=delay, user=self)

    def enqueue_rate_limit(
        self, path: str = "/v1", *, retry_after: int | None = 1, quota: bool = False, times: int = 1
    ) -> None:
        """Answer this listener's next `times` requests to `path` with a 429 (see the server's method)."""
        self._server.enqueue_rate_limit(path, retry_after=retry_after, quota=quota, times=times, user=self)

    def enqueue_next_fault(self, kind: str, *, times: int = 1) -> None:
        """Give this listener's next `times` recently-played pages a `next` link that goes wrong as `kind` says."""
        self._server.enqueue_next_fault(kind, times=times, user=self)

    def hold_requests(self, path: str, *, skip: int = 0) -> RequestHold:
        """Make this listener's requests to `path` wait until the returned hold is released."""
        return self._server.hold_requests(path, skip=skip, user=self)
