"""The accounts side of the sample server: `/authorize`, `/api/token` and access-token checks.

It follows Spotify's Authorization Code flow (with optional PKCE): client authentication by
HTTP Basic, single-use codes bound to their redirect URI, refresh tokens that can be rotated or
revoked, and access tokens that expire. Error bodies use Spotify's shapes and messages.
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
from typing import Any
from urllib.parse import urlencode, urlsplit

from pipelines.spotify.settings import SCOPE

ACCESS_TOKEN_SECONDS = 3600
CODE_SECONDS = 600


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
class _Code:
    redirect_uri: str
    scope: str
    code_challenge: str | None
    expires_at: float


@dataclass
class _AccessToken:
    scopes: frozenset[str]
    expires_at: float
    expired: bool = False


def s256(code_verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier: unpadded base64url of its SHA-256."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(left: str | None, right: str) -> bool:
    return left is not None and hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def _with_query(uri: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(uri).query else "?"
    return f"{uri}{separator}{urlencode(params)}"


class Accounts:
    """Client credentials, codes, refresh and access tokens of one app and one user; thread-safe."""

    def __init__(self, *, client_id: str, client_secret: str, refresh_token: str) -> None:
        self._lock = threading.Lock()
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._pending_refresh_token: str | None = None
        self._revoked = False
        self._refresh_scope = SCOPE
        self._codes: dict[str, _Code] = {}
        self._access_tokens: dict[str, _AccessToken] = {}

    # --- scripted changes -------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str:
        with self._lock:
            return self._refresh_token

    @property
    def issued_access_tokens(self) -> list[str]:
        with self._lock:
            return list(self._access_tokens)

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self._access_tokens.values():
                token.expired = True

    def rotate_refresh_token(self, new_token: str) -> None:
        with self._lock:
            self._pending_refresh_token = new_token

    def revoke_refresh_token(self) -> None:
        with self._lock:
            self._revoked = True
            self._pending_refresh_token = None

    def grant_refresh_token_scope(self, scope: str) -> None:
        with self._lock:
            self._refresh_scope = scope

    def issue_access_token(self, scope: str = SCOPE) -> str:
        """A valid access token without going through the token endpoint."""
        with self._lock:
            return self._issue(scope)

    # --- /authorize ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> AuthorizeResult:
        """The user pressing "Agree": a code for the client, or why Spotify refused outright."""
        if not _same(query.get("client_id"), self.client_id):
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
            self._codes[code] = _Code(
                redirect_uri=redirect_uri,
                scope=" ".join(query.get("scope", "").split()),
                code_challenge=challenge,
                expires_at=time.monotonic() + CODE_SECONDS,
            )
        return AuthorizeResult(location=_with_query(redirect_uri, {"code": code, **back}))

    # --- /api/token ---------------------------------------------------------------------------

    def token(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        """Answer a token request; raises OAuthError for anything Spotify would refuse."""
        confidential = self._authenticate(authorization, form)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("unsupported_grant_type", "grant_type parameter is missing")
        if grant_type == "refresh_token":
            if not confidential:
                # Refreshing without the secret is only possible for PKCE-only apps; this app has a secret.
                raise OAuthError("invalid_client", "Invalid client")
            return self._refresh(form)
        if grant_type == "authorization_code":
            return self._exchange_code(form, confidential)
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    def _authenticate(self, authorization: str | None, form: dict[str, str]) -> bool:
        """True for a client proving its secret by Basic auth, False for a public PKCE client."""
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise OAuthError("invalid_client", "Invalid client")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Invalid client") from None
            client_id, separator, client_secret = decoded.partition(":")
            if not (separator and _same(client_id, self.client_id) and _same(client_secret, self._client_secret)):
                raise OAuthError("invalid_client", "Invalid client")
            if "client_id" in form and not _same(form["client_id"], self.client_id):
                raise OAuthError("invalid_client", "Invalid client")
            return True
        # Without Basic auth only a PKCE exchange can identify itself, by client_id alone.
        public_exchange = form.get("grant_type") == "authorization_code" and "code_verifier" in form
        if public_exchange and "client_secret" not in form and _same(form.get("client_id"), self.client_id):
            return False
        raise OAuthError("invalid_client", "Invalid client")

    def _refresh(self, form: dict[str, str]) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request", "refresh_token must be supplied")
        with self._lock:
            if self._revoked or not _same(presented, self._refresh_token):
                raise OAuthError("invalid_grant", "Invalid refresh token")
            response = self._token_response(self._refresh_scope)
            if self._pending_refresh_token is not None:
                self._refresh_token = self._pending_refresh_token
                self._pending_refresh_token = None
                response["refresh_token"] = self._refresh_token
            response["scope"] = self._refresh_scope
            return response

    def _exchange_code(self, form: dict[str, str], confidential: bool) -> dict[str, Any]:
        with self._lock:
            # Codes are single-use: the first attempt consumes one whether or not it succeeds.
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.expires_at < time.monotonic():
                raise OAuthError("invalid_grant", "Invalid authorization code")
            if form.get("redirect_uri") != code.redirect_uri:
                raise OAuthError("invalid_grant", "Invalid redirect URI")
            verifier = form.get("code_verifier")
            if code.code_challenge is None:
                if verifier is not None or not confidential:
                    raise OAuthError("invalid_grant", "code_verifier was incorrect")
            elif verifier is None or not _same(s256(verifier), code.code_challenge):
                raise OAuthError("invalid_grant", "code_verifier was incorrect")
            if self._revoked:
                # Authorizing again after a revocation grants a fresh refresh token.
                self._refresh_token = secrets.token_urlsafe(48)
                self._revoked = False
                self._pending_refresh_token = None
            response = self._token_response(code.scope)
            response["refresh_token"] = self._refresh_token
            response["scope"] = code.scope
            return response

    def _token_response(self, scope: str) -> dict[str, Any]:
        return {
            "access_token": self._issue(scope),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
        }

    def _issue(self, scope: str) -> str:
        token = secrets.token_urlsafe(64)
        self._access_tokens[token] = _AccessToken(
            scopes=frozenset(scope.split()), expires_at=time.monotonic() + ACCESS_TOKEN_SECONDS
        )
        return token

    # --- Web API ------------------------------------------------------------------------------

    def check_bearer(self, authorization: str | None, required_scope: str | None = None) -> None:
        """Raise ApiAuthError unless the header carries a live access token (with the scope, if any)."""
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
