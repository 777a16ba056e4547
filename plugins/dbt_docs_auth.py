"""Airflow plugin: Cosmos' dbt docs (`/cosmos/...` on the api-server) answer only to users Airflow logged in.

Airflow checks credentials with a dependency on each of its own routers. Cosmos serves the dbt docs from a
plugin FastAPI app that Airflow attaches with `app.mount("/cosmos", ...)`; a mounted app inherits none of those
dependencies, and no middleware of the api-server authenticates, so without this plugin the docs (whose catalog
lists every table and column of the database) answer anyone who can reach the api-server.

This plugin adds a root middleware through the plugin interface `fastapi_root_middlewares`. For every request
under `/cosmos/` it checks the credential the UI and the REST API use (the `_token` cookie the login sets, or
an `Authorization: Bearer` JWT from `POST /auth/token`) with the configured auth manager, and lets the request
through only if that user may read the DAG that publishes the docs: 401 without a valid login, 403 without
access. It imports nothing from this project, so it can be copied into the api-server's plugins folder alone.

Install: put this file in the api-server's `[core] plugins_folder` (default `$AIRFLOW_HOME/plugins`), or point
`AIRFLOW__CORE__PLUGINS_FOLDER` at this directory; restart the api-server. See docs/deploy.md.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.plugins_manager import AirflowPlugin

PROTECTED_PREFIX = "/cosmos"
# The DAG whose docs these are: whoever may read it may read its docs (and no one else).
DAG_ID = "spotify_elt"
COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class DbtDocsAuthMiddleware:
    """ASGI middleware: requests below `prefix` need a user the auth manager authorises to read `dag_id`."""

    def __init__(self, app: Any, prefix: str = PROTECTED_PREFIX, dag_id: str = DAG_ID) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.dag_id = dag_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._protects(scope):
            refusal = await self._refusal(scope)
            if refusal is not None:
                from starlette.responses import JSONResponse

                status, detail = refusal
                await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _protects(self, scope: dict[str, Any]) -> bool:
        """Whether the request reaches the mounted app (the path below `[api] base_url`'s, slashes collapsed)."""
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        path = re.sub(r"/{2,}", "/", path)
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def _refusal(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        """(status, reason) when the request may not pass, else None."""
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
        from jwt import ExpiredSignatureError, InvalidTokenError
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import HTTPConnection

        connection = HTTPConnection(scope)
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else connection.cookies.get(COOKIE_NAME)
        if not token:
            return 401, "Not authenticated"
        auth_manager = get_auth_manager()
        try:
            user = await auth_manager.get_user_from_token(token)
        except ExpiredSignatureError:
            return 401, "Token Expired"
        except InvalidTokenError:
            return 403, "Invalid JWT token"
        allowed = await run_in_threadpool(
            auth_manager.is_authorized_dag, method="GET", details=DagDetails(id=self.dag_id), user=user
        )
        return None if allowed else (403, "Forbidden")


class DbtDocsAuthPlugin(AirflowPlugin):
    """Puts the dbt docs Cosmos serves behind Airflow's login."""

    name = "spotify_dbt_docs_auth"
    fastapi_root_middlewares = [
        {"name": "dbt docs behind Airflow's login", "middleware": DbtDocsAuthMiddleware, "args": [], "kwargs": {}}
    ]
