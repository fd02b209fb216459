"""Who may use the dashboard: with a token, a request must carry it, as ``Authorization: Bearer
<token>``, or once as ``?token=<token>`` (the dashboard then sets a cookie and redirects to the
same page without it), or as that cookie. Actions (POST) also need htmx's ``HX-Request`` header,
which a page of another site cannot send without the dashboard's consent (no CORS here): a
cross-site form cannot cancel a workflow, on loopback without a token either."""

from __future__ import annotations

import hmac

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

COOKIE = "infinitic_dashboard_token"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve on another interface than loopback without a token.

    Raises:
        ValueError: ``host`` is not a loopback address and no token is given.
    """
    if host not in LOOPBACK and not token:
        raise ValueError(
            f"the dashboard serves workflow data and actions: bound to {host}, it needs a token "
            "(--token or INFINITIC_DASHBOARD_TOKEN)"
        )


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenMiddleware(BaseHTTPMiddleware):
    """Checks the token (when one is set) and the ``HX-Request`` header of actions."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        super().__init__(app)
        self._token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in ("GET", "HEAD") and request.headers.get("hx-request") != "true":
            return PlainTextResponse("actions are sent by the dashboard's pages only", 403)
        token = self._token
        if token is None:
            return await call_next(request)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and _same(header[7:].strip(), token):
            return await call_next(request)
        if _same(request.cookies.get(COOKIE), token):
            return await call_next(request)
        if _same(request.query_params.get("token"), token) and request.method == "GET":
            query = "&".join(f"{k}={v}" for k, v in _pairs(request.url.query) if k != "token")
            target = request.url.path + (f"?{query}" if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        return PlainTextResponse(
            "a token is needed: Authorization: Bearer <token>, or ?token=<token> once", 401
        )


def _pairs(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            out.append((key, value))
    return out
