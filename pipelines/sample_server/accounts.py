"""The accounts side of the sample server: `/authorize`, `/api/token` and access-token checks.

It follows Spotify's Authorization Code flow (with optional PKCE) for one app, or more (`register_app`: a
development-mode app takes only 5 listeners), and any number of listeners who authorised them: client
authentication by HTTP Basic, single-use codes bound to their app, their redirect URI and the listener signed
in, refresh tokens that each belong to one listener of one app (another app's credentials get invalid_grant)
and can be rotated, revoked or expire 6 months after the listener authorised, and access tokens that expire
and act for the listener they were issued to. Error bodies use Spotify's shapes and messages.

Each listener authorised exactly one of the apps (as a household splitting its listeners over two apps
does): `/authorize` by another app, while that listener is signed in, is answered as if they pressed
"Cancel" (`error=access_denied`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from pipelines.sample_server.clock import Clock, add_months, require_aware, system_clock
from pipelines.spotify.settings import SCOPE

ACCESS_TOKEN_SECONDS = 3600
CODE_SECONDS = 600
# Refresh tokens expire this many months after the user authorised; refreshing does not extend them.
REFRESH_TOKEN_MONTHS = 6

# What a successful refresh says about the refresh token, unless a rotation is pending (which always returns one).
# Since about mid-2026 Spotify's refresh responses often carry none, so that is the default.
REFRESH_OMITS = "omit"  # no `refresh_token` in the response: the client keeps the one it has
REFRESH_REPEATS = "same"  # the response carries the refresh token just used
REFRESH_ROTATES = "new"  # every refresh returns a new refresh token and the old one stops working
REFRESH_MODES = (REFRESH_OMITS, REFRESH_REPEATS, REFRESH_ROTATES)

# error_description values of invalid_grant; clients should act on `error` alone.
UNKNOWN_GRANT = "Invalid refresh token"  # unknown, or replaced by a rotation or a new authorisation
REVOKED_GRANT = "Refresh token revoked"  # what Spotify says when the user removed the app's access
EXPIRED_GRANT = "Refresh token expired"  # Spotify's wording for expiry is not documented


class OAuthError(Exception):
    """An error the token endpoint reports as `{"error": ..., "error_description": ...}`."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class ApiAuthError(Exception):
    """A Web API request without a usable access token; `status` is 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AuthorizeResult:
    """Either a redirect back to the client (`location`) or an error page Spotify shows itself."""

    location: str | None = None
    error_page: str | None = None


@dataclass
class _Grant:
    """What one listener granted the app: their refresh token, since when, and the scripted changes to it."""

    user_id: str
    client_id: str
    refresh_token: str
    authorised_at: datetime
    refresh_returns: str
    scope: str = SCOPE
    pending_refresh_token: str | None = None
    revoked: bool = False

    @property
    def expires_at(self) -> datetime:
        return add_months(self.authorised_at, REFRESH_TOKEN_MONTHS)


@dataclass
class _Code:
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    expires_at: float


@dataclass
class _AccessToken:
    user_id: str
    scopes: frozenset[str]
    expires_at: float
    expired: bool = False


def s256(code_verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier: unpadded base64url of its SHA-256."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_refresh_mode(mode: str) -> str:
    """`mode` itself if it is one of REFRESH_MODES, else a ValueError."""
    if mode not in REFRESH_MODES:
        raise ValueError(f"refresh_returns must be one of {', '.join(map(repr, REFRESH_MODES))}, got {mode!r}")
    return mode


def _same(left: str | None, right: str) -> bool:
    return left is not None and hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def _with_query(uri: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(uri).query else "?"
    return f"{uri}{separator}{urlencode(params)}"


class Accounts:
    """Client credentials, codes, and each listener's refresh and access tokens, per app; thread-safe.

    `client_id` is the first app's, the one listeners authorise unless they are added for another app
    (`register_app`). Listeners are known by their user id. The first listener added is the one signed
    in to the browser that `/authorize` sees, until `sign_in` names another.
    """

    def __init__(self, *, client_id: str, client_secret: str, clock: Clock = system_clock) -> None:
        self._lock = threading.Lock()
        self.client_id = client_id
        self._apps: dict[str, str] = {}  # client id -> client secret
        self.register_app(client_id, client_secret)
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        # Every refresh token ever issued, to the listener it was issued to: a dead token still says whose it was.
        self._owners: dict[str, str] = {}
        self._signed_in: str | None = None
        self._codes: dict[str, _Code] = {}
        self._access_tokens: dict[str, _AccessToken] = {}

    # --- time ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The accounts service's "now", which decides when refresh tokens expire."""
        return require_aware(self._clock(), "the clock's time")

    def set_clock(self, clock: Clock) -> None:
        with self._lock:
            self._clock = clock

    # --- apps -------------------------------------------------------------------------------------

    def register_app(self, client_id: str, client_secret: str) -> None:
        """Another app (client id and secret) whose listeners this accounts service serves."""
        if not client_id or not client_secret:
            raise ValueError("an app needs a client id and a client secret")
        with self._lock:
            if client_id in self._apps:
                raise ValueError(f"there is an app {client_id!r} already")
            self._apps[client_id] = client_secret

    def _app(self, client_id: str | None) -> str | None:
        """The registered client id equal to `client_id` (compared in constant time), or None."""
        return next((known for known in self._apps if _same(client_id, known)), None)

    def app_of(self, user_id: str) -> str:
        """The client id of the app this listener authorised."""
        with self._lock:
            return self._grant(user_id).client_id

    # --- listeners ----------------------------------------------------------------------------

    def add_grant(
        self,
        user_id: str,
        refresh_token: str,
        *,
        authorised_at: datetime | None = None,
        refresh_returns: str = REFRESH_OMITS,
        client_id: str | None = None,
    ) -> None:
        """A listener who authorised the app `client_id` (default: the first app) at `authorised_at` (default:
        now) and holds `refresh_token`."""
        check_refresh_mode(refresh_returns)
        when = self.now() if authorised_at is None else require_aware(authorised_at, "authorised_at")
        if not refresh_token:
            raise ValueError("a refresh token must not be empty")
        client_id = self.client_id if client_id is None else client_id
        with self._lock:
            if client_id not in self._apps:
                raise ValueError(f"no app {client_id!r} on this server: register_app() it first")
            if user_id in self._grants:
                raise ValueError(f"there is a listener {user_id!r} already")
            self._claim(refresh_token, user_id)
            self._grants[user_id] = _Grant(user_id, client_id, refresh_token, when, refresh_returns)
            if self._signed_in is None:
                self._signed_in = user_id

    def _grant(self, user_id: str) -> _Grant:
        grant = self._grants.get(user_id)
        if grant is None:
            raise KeyError(f"no listener {user_id!r} on this server")
        return grant

    def _claim(self, refresh_token: str, user_id: str) -> None:
        owner = self._owners.get(refresh_token)
        if owner is not None and owner != user_id:
            raise ValueError(f"that refresh token belongs to listener {owner!r}")
        self._owners[refresh_token] = user_id

    def _new_refresh_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(48)
        self._claim(token, user_id)
        return token

    def sign_in(self, user_id: str) -> None:
        with self._lock:
            self._grant(user_id)
            self._signed_in = user_id

    @property
    def signed_in(self) -> str | None:
        with self._lock:
            return self._signed_in

    # --- scripted changes -------------------------------------------------------------------

    def current_refresh_token(self, user_id: str) -> str:
        with self._lock:
            return self._grant(user_id).refresh_token

    def authorised_at(self, user_id: str) -> datetime:
        with self._lock:
            return self._grant(user_id).authorised_at

    def expires_at(self, user_id: str) -> datetime:
        with self._lock:
            return self._grant(user_id).expires_at

    def refresh_returns(self, user_id: str) -> str:
        with self._lock:
            return self._grant(user_id).refresh_returns

    def set_refresh_returns(self, user_id: str, mode: str) -> None:
        check_refresh_mode(mode)
        with self._lock:
            self._grant(user_id).refresh_returns = mode

    def issued_access_tokens(self, user_id: str | None = None) -> list[str]:
        with self._lock:
            return [token for token, record in self._access_tokens.items() if user_id in (None, record.user_id)]

    def expire_access_tokens(self, user_id: str | None = None) -> None:
        with self._lock:
            for record in self._access_tokens.values():
                if user_id in (None, record.user_id):
                    record.expired = True

    def rotate_refresh_token(self, user_id: str, new_token: str) -> None:
        if not new_token:
            raise ValueError("a refresh token must not be empty")
        with self._lock:
            grant = self._grant(user_id)
            self._claim(new_token, user_id)
            grant.pending_refresh_token = new_token

    def revoke_refresh_token(self, user_id: str) -> None:
        with self._lock:
            grant = self._grant(user_id)
            grant.revoked = True
            grant.pending_refresh_token = None

    def reauthorize(self, user_id: str, refresh_token: str | None = None, authorised_at: datetime | None = None) -> str:
        """The listener authorises the app again: a new refresh token, counted from `authorised_at` (default now)."""
        when = self.now() if authorised_at is None else require_aware(authorised_at, "authorised_at")
        with self._lock:
            grant = self._grant(user_id)
            if refresh_token:
                self._claim(refresh_token, user_id)
            token = refresh_token or self._new_refresh_token(user_id)
            grant.refresh_token, grant.authorised_at = token, when
            grant.revoked, grant.pending_refresh_token = False, None
            return token

    def grant_refresh_token_scope(self, user_id: str, scope: str) -> None:
        with self._lock:
            self._grant(user_id).scope = scope

    def issue_access_token(self, user_id: str, scope: str = SCOPE) -> str:
        """A valid access token without going through the token endpoint."""
        with self._lock:
            self._grant(user_id)
            return self._issue(user_id, scope)

    # --- whose request is it ------------------------------------------------------------------

    def owner_of_token_request(self, form: dict[str, str]) -> str | None:
        """The listener a token request acts for, by its refresh token or code (valid or not), if known."""
        with self._lock:
            if "refresh_token" in form:
                return self._owners.get(form["refresh_token"])
            code = self._codes.get(form.get("code", ""))
            return code.user_id if code is not None else None

    def owner_of_bearer(self, authorization: str | None) -> str | None:
        """The listener an access token in an Authorization header was issued to, if it is one of ours."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self._lock:
            record = self._access_tokens.get(token.strip())
            return record.user_id if record is not None else None

    # --- /authorize ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> AuthorizeResult:
        """The signed-in user pressing "Agree": a code for the client, or why Spotify refused outright."""
        with self._lock:
            client_id = self._app(query.get("client_id"))
        if client_id is None:
            return AuthorizeResult(error_page="INVALID_CLIENT: Invalid client")
        redirect_uri = query.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return AuthorizeResult(error_page="INVALID_CLIENT: Invalid redirect URI")
        back: dict[str, str] = {}
        if "state" in query:
            back["state"] = query["state"]
        if query.get("response_type") != "code":
            error = {"error": "unsupported_response_type"}
            return AuthorizeResult(location=_with_query(redirect_uri, {**error, **back}))
        challenge = query.get("code_challenge")
        method = query.get("code_challenge_method")
        if (challenge is None) != (method is None) or (method is not None and method != "S256"):
            error = {"error": "invalid_request"}
            return AuthorizeResult(location=_with_query(redirect_uri, {**error, **back}))
        code = secrets.token_urlsafe(48)
        with self._lock:
            if self._signed_in is None:
                return AuthorizeResult(error_page="No user is signed in")
            if self._grants[self._signed_in].client_id != client_id:
                # Each listener here authorised one app: for another, they press "Cancel".
                return AuthorizeResult(location=_with_query(redirect_uri, {"error": "access_denied", **back}))
            self._codes[code] = _Code(
                user_id=self._signed_in,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scope=" ".join(query.get("scope", "").split()),
                code_challenge=challenge,
                expires_at=time.monotonic() + CODE_SECONDS,
            )
        return AuthorizeResult(location=_with_query(redirect_uri, {"code": code, **back}))

    # --- /api/token ---------------------------------------------------------------------------

    def token(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        """Answer a token request; raises OAuthError for anything Spotify would refuse."""
        client_id, confidential = self._authenticate(authorization, form)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("unsupported_grant_type", "grant_type parameter is missing")
        if grant_type == "refresh_token":
            if not confidential:
                # Refreshing without the secret is only possible for PKCE-only apps; this app has a secret.
                raise OAuthError("invalid_client", "Invalid client")
            return self._refresh(form, client_id)
        if grant_type == "authorization_code":
            return self._exchange_code(form, client_id, confidential)
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    def _authenticate(self, authorization: str | None, form: dict[str, str]) -> tuple[str, bool]:
        """The app's client id, and True for a client proving its secret by Basic auth, False for a public PKCE
        client."""
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise OAuthError("invalid_client", "Invalid client")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Invalid client") from None
            claimed, separator, client_secret = decoded.partition(":")
            with self._lock:
                client_id = self._app(claimed)
                secret = self._apps[client_id] if client_id is not None else None
            if not (separator and client_id is not None and _same(client_secret, secret)):
                raise OAuthError("invalid_client", "Invalid client")
            if "client_id" in form and not _same(form["client_id"], client_id):
                raise OAuthError("invalid_client", "Invalid client")
            return client_id, True
        # Without Basic auth only a PKCE exchange can identify itself, by client_id alone.
        public_exchange = form.get("grant_type") == "authorization_code" and "code_verifier" in form
        with self._lock:
            client_id = self._app(form.get("client_id"))
        if public_exchange and "client_secret" not in form and client_id is not None:
            return client_id, False
        raise OAuthError("invalid_client", "Invalid client")

    def _refresh(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request", "refresh_token must be supplied")
        now = self.now()
        with self._lock:
            owner = self._owners.get(presented)
            grant = self._grants.get(owner) if owner is not None else None
            # Another app's refresh token is unknown to this one, as a token of nobody's is.
            if grant is None or not _same(presented, grant.refresh_token) or grant.client_id != client_id:
                raise OAuthError("invalid_grant", UNKNOWN_GRANT)
            if grant.revoked:
                raise OAuthError("invalid_grant", REVOKED_GRANT)
            if now >= grant.expires_at:
                raise OAuthError("invalid_grant", EXPIRED_GRANT)
            response = self._token_response(grant.user_id, grant.scope)
            new_token, grant.pending_refresh_token = grant.pending_refresh_token, None
            if new_token is None and grant.refresh_returns == REFRESH_ROTATES:
                new_token = self._new_refresh_token(grant.user_id)
            if new_token is not None:
                # A rotation keeps the authorisation time: refreshing never extends the 6 months.
                grant.refresh_token = new_token
            if new_token is not None or grant.refresh_returns == REFRESH_REPEATS:
                response["refresh_token"] = grant.refresh_token
            response["scope"] = grant.scope
            return response

    def _exchange_code(self, form: dict[str, str], client_id: str, confidential: bool) -> dict[str, Any]:
        now = self.now()
        with self._lock:
            # Codes are single-use: the first attempt consumes one whether or not it succeeds.
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.expires_at < time.monotonic() or code.client_id != client_id:
                raise OAuthError("invalid_grant", "Invalid authorization code")
            if form.get("redirect_uri") != code.redirect_uri:
                raise OAuthError("invalid_grant", "Invalid redirect URI")
            verifier = form.get("code_verifier")
            if code.code_challenge is None:
                if verifier is not None or not confidential:
                    raise OAuthError("invalid_grant", "code_verifier was incorrect")
            elif verifier is None or not _same(s256(verifier), code.code_challenge):
                raise OAuthError("invalid_grant", "code_verifier was incorrect")
            grant = self._grant(code.user_id)
            if grant.revoked or now >= grant.expires_at:
                # Authorizing again after a revocation or expiry grants a fresh refresh token.
                grant.refresh_token = self._new_refresh_token(grant.user_id)
                grant.revoked = False
                grant.pending_refresh_token = None
            # The listener has just authorised: the 6 months start again.
            grant.authorised_at = now
            response = self._token_response(grant.user_id, code.scope)
            response["refresh_token"] = grant.refresh_token
            response["scope"] = code.scope
            return response

    def _token_response(self, user_id: str, scope: str) -> dict[str, Any]:
        return {
            "access_token": self._issue(user_id, scope),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
        }

    def _issue(self, user_id: str, scope: str) -> str:
        token = secrets.token_urlsafe(64)
        self._access_tokens[token] = _AccessToken(
            user_id=user_id, scopes=frozenset(scope.split()), expires_at=time.monotonic() + ACCESS_TOKEN_SECONDS
        )
        return token

    # --- Web API ------------------------------------------------------------------------------

    def check_bearer(self, authorization: str | None, required_scope: str | None = None) -> str:
        """The user id the header's live access token acts for (with the scope, if any); else ApiAuthError."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiAuthError(401, "No token provided")
        with self._lock:
            record = self._access_tokens.get(token)
            if record is None:
                raise ApiAuthError(401, "Invalid access token")
            if record.expired or record.expires_at < time.monotonic():
                raise ApiAuthError(401, "The access token expired")
            if required_scope is not None and required_scope not in record.scopes:
                raise ApiAuthError(403, "Insufficient client scope")
            return record.user_id
