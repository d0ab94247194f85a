"""Optional HTTP basic auth for the whole app (pages, callbacks, assets), on when both
AMR_DASHBOARD_USER and AMR_DASHBOARD_PASSWORD are set."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

import flask


@dataclass(frozen=True, kw_only=True)
class BasicAuth:
    user: str
    password: str

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> BasicAuth | None:
        env = os.environ if environ is None else environ
        user, password = env.get("AMR_DASHBOARD_USER"), env.get("AMR_DASHBOARD_PASSWORD")
        if not user or not password:
            return None
        return cls(user=user, password=password)

    def allows(self, authorization: flask.wrappers.Request) -> bool:
        auth = authorization.authorization
        if auth is None or auth.type != "basic":
            return False
        # Constant-time comparisons: no timing hints about the user name or password.
        ok_user = hmac.compare_digest((auth.username or "").encode(), self.user.encode())
        ok_password = hmac.compare_digest((auth.password or "").encode(), self.password.encode())
        return ok_user and ok_password

    def install(self, server: flask.Flask) -> None:
        @server.before_request
        def _require_auth() -> flask.Response | None:
            if self.allows(flask.request):
                return None
            return flask.Response(
                "authentication required", 401, {"WWW-Authenticate": 'Basic realm="AMR dashboards", charset="UTF-8"'}
            )
