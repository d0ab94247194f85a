"""Header-based authentication behind a reverse proxy (nginx, Apache, oauth2-proxy) that authenticates the user
and forwards the name in ``X-Forwarded-User``.

Trusted only when asked for (``amr dashboard --trust-proxy-header``) and only with the dashboards bound to a
loopback address: then only processes on this machine (the proxy) can reach them. The proxy must set the header on
every request it forwards, replacing any value the client sent (nginx: ``proxy_set_header X-Forwarded-User
$remote_user;``); deploy/README.md shows the configuration. A request without the header falls back to the basic
auth of dashboards.auth (local scripts, the benchmarks), so the header never weakens what basic auth allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import flask

from amr.errors import ConfigError
from dashboards.auth import BasicAuth, is_loopback

PROXY_USER_HEADER = "X-Forwarded-User"
MAX_USER_CHARS = 256  # a longer "user name" is not one a proxy set


@dataclass(frozen=True, kw_only=True)
class ProxyHeaderAuth:
    fallback: BasicAuth | None
    header: str = PROXY_USER_HEADER

    @classmethod
    def for_host(cls, host: str, fallback: BasicAuth | None) -> ProxyHeaderAuth:
        """ConfigError unless `host` is a loopback address: on any other, clients could set the header themselves."""
        if not is_loopback(host):
            raise ConfigError(
                f"{PROXY_USER_HEADER} would be trusted from anyone who can reach {host}; "
                "--trust-proxy-header needs a loopback bind (127.0.0.1, ::1) behind the reverse proxy",
                source="--trust-proxy-header",
            )
        return cls(fallback=fallback)

    def user(self, request: flask.wrappers.Request) -> str | None:
        value = (request.headers.get(self.header) or "").strip()
        return value if value and len(value) <= MAX_USER_CHARS and value.isprintable() else None

    def allows(self, request: flask.wrappers.Request) -> bool:
        if self.user(request) is not None:
            return True
        return self.fallback is not None and self.fallback.allows(request)

    def install(self, server: flask.Flask) -> None:
        @server.before_request
        def _require_auth() -> flask.Response | None:
            if self.allows(flask.request):
                return None
            return flask.Response(
                "authentication required", 401, {"WWW-Authenticate": 'Basic realm="AMR dashboards", charset="UTF-8"'}
            )
