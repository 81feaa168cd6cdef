"""The dashboard's web app (Starlette): one page, its JSON document, and server-sent events that push the
document within a second of a change. Read-only: no route writes Redis or talks to the exchange but to read.

Login: `/?token=<DASHBOARD_TOKEN>` once; the app answers with a session cookie (an HMAC of the token, HttpOnly,
SameSite=Strict) and a redirect that drops the token from the address bar. `Authorization: Bearer <token>`
works for scripts. Without DASHBOARD_TOKEN (only allowed on the local paper stack) every request is let in."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.dashboard.view import DashboardView

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "executor_dashboard"
CHANGE_POLL_SEC = 0.5      # how often the change check runs per open page (pushes coalesce to this)
REFRESH_SEC = 1.0          # the document is pushed at least this often (heartbeat ages, PnL at the book)
REFUSED = ("<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
           "<title>Executor: refused</title></head><body><h1 id='refused'>Refused</h1>"
           "<p>This dashboard needs its token: open <code>/?token=&lt;DASHBOARD_TOKEN&gt;</code>.</p></body></html>")


def session_value(token: str) -> str:
    """The cookie's value for `token` (the token itself never rests in the browser)."""
    return hmac.new(token.encode(), b"executor-dashboard-session", hashlib.sha256).hexdigest()


def make_app(view: DashboardView, token: str) -> Starlette:
    """The ASGI app over one DashboardView; `token` empty = no login (local paper stack only)."""
    session = session_value(token) if token else ""

    def allowed(request: Request) -> bool:
        if not token:
            return True
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session.encode())

    async def index(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if token and not hmac.compare_digest(given.encode(), token.encode()):
                return HTMLResponse(REFUSED, status_code=401)
            resp = RedirectResponse("/", status_code=303)
            if token:
                resp.set_cookie(COOKIE, session, httponly=True, samesite="strict")
            return resp
        if not allowed(request):
            return HTMLResponse(REFUSED, status_code=401)
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def document(request: Request) -> Response:
        if not allowed(request):
            return JSONResponse({"error": "refused: DASHBOARD_TOKEN required"}, status_code=401)
        return JSONResponse(await run_in_threadpool(view.document))

    async def events(request: Request) -> Response:
        if not allowed(request):
            return PlainTextResponse("refused: DASHBOARD_TOKEN required", status_code=401)
        return EventSourceResponse(_stream(request, view), ping=15)

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", index), Route("/api/document", document), Route("/events", events),
                             Route("/healthz", health), Mount("/static", StaticFiles(directory=STATIC), name="static")])


async def _stream(request: Request, view: DashboardView) -> AsyncIterator[dict[str, str]]:
    """The document at once, then again on every change (checked every CHANGE_POLL_SEC) and at least every
    REFRESH_SEC."""
    last_fp, last_sent = "", 0.0
    while not await request.is_disconnected():
        fp = await run_in_threadpool(view.fingerprint)
        now = time.monotonic()
        if fp != last_fp or now - last_sent >= REFRESH_SEC:
            doc = await run_in_threadpool(view.document, fp != last_fp)
            last_fp, last_sent = fp, now
            yield {"event": "document", "data": json.dumps(doc)}
        await asyncio.sleep(CHANGE_POLL_SEC)  # the change check's period, not a synchronisation
