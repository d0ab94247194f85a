"""The Dash app: a navigation bar and one page per module in dashboards.pages, routed on the URL path.

Callbacks are registered on the app instance (not Dash's global registry), so a process can hold several apps,
each with its own connection pool (tests, the demo).
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Protocol

import dash
import flask
from dash import Input, Output, State, dcc, html

from dashboards.auth import BasicAuth
from dashboards.components import empty_state
from dashboards.pages import billing, network, quality, rollout
from dashboards.source import DataSource

log = logging.getLogger(__name__)

PAGES: tuple[ModuleType, ...] = (rollout, network, quality, billing)


def _nav(pathname: str) -> list[Any]:
    links: list[Any] = [html.Span("AMR — Hà Nội · TP. Hồ Chí Minh", className="brand")]
    for page in PAGES:
        cls = "active" if pathname == page.path else ""
        links.append(dcc.Link(page.title, href=page.path, className=cls, id=f"nav-{page.__name__.rsplit('.', 1)[1]}"))
    return links


def create_app(conninfo: str, *, auth: BasicAuth | None, source: DataSource | None = None) -> dash.Dash:
    """A Dash app reading through a read-only pool on `conninfo` (role amr_reader), guarded by `auth` (every
    page, callback and asset); None serves without authentication. No default: each caller decides, normally
    with dashboards.auth.resolve_auth (generated credentials unless configured)."""
    src = source or DataSource(conninfo)
    app = dash.Dash(
        __name__,
        title="AMR dashboards",
        suppress_callback_exceptions=True,
        update_title="",
        serve_locally=True,  # offline: the JS bundles come from the package, never a CDN
    )
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            html.Div(_nav("/"), id="nav", className="nav"),
            html.Div(id="page", className="page"),
        ]
    )

    @app.callback(
        Output("page", "children"), Output("nav", "children"), Input("url", "pathname"), State("url", "search")
    )
    def _route(pathname: str | None, search: str | None) -> tuple[Any, Any]:
        pathname = pathname or "/"
        for page in PAGES:
            if pathname == page.path:
                return page.layout(src, search or ""), _nav(pathname)
        return empty_state(f"no page at {pathname}"), _nav(pathname)

    for page in PAGES:
        page.register(app, src)

    if auth is not None:
        auth.install(app.server)
    app.server.config["AMR_DATA_SOURCE"] = src
    return app


class Guard(Protocol):
    """What guards the app: dashboards.auth.BasicAuth or dashboards.proxy_auth.ProxyHeaderAuth."""

    def install(self, server: flask.Flask) -> None: ...


def wsgi_server(conninfo: str, *, guard: Guard | None) -> flask.Flask:
    """The WSGI entry a production server (gunicorn, app/services/web.py) serves: built in each worker process
    after the fork, so every worker has its own connection pool. `guard` None serves without authentication."""
    app = create_app(conninfo, auth=None)
    if guard is not None:
        guard.install(app.server)
    server: flask.Flask = app.server
    return server
