"""The dashboard's web layer (Starlette): the login, the page, its live stream (server-sent
events), and the two steps of a command. It shows what ``hub`` holds and asks ``commands`` to
send; it reads nothing from the bus itself.

Everything the page needs is served from this package (``static/``): no CDN, no internet. The
page's Content-Security-Policy allows scripts, styles and connections to this origin only. No
secret, ticket or token ever goes into a URL: the session is an HttpOnly, SameSite=Strict cookie,
and each POST carries the session's CSRF token in a header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate.dashboard.auth import COOKIE, Auth, Session, TooManyAttempts
from gate.dashboard.commands import Commander, CommandRefused
from gate.dashboard.hub import Hub

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_FORM = 4096  # bytes of a login form or a command's JSON: more is refused unread (413)
HEARTBEAT = 1.0  # the page is sent the state at least this often (ages, silent lanes)
SECURITY_HEADERS = [
    (b"content-security-policy", (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                  b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Pure ASGI middleware (it must not buffer the event stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(*, hub: Hub, auth: Auth, commander: Commander, title: str, push_interval: float, secure_cookie: bool) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescaped: bus text is never markup

    def session_of(request: Request) -> Session | None:
        return auth.session(request.cookies.get(COOKIE))

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    async def login_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"title": title, "error": ""})

    async def login(request: Request) -> Response:
        client = client_of(request)

        def too_many() -> Response:
            return templates.TemplateResponse(request, "login.html", {"title": title, "error": "Too many attempts: wait a minute."},
                                              status_code=429)

        if auth.throttled(client):  # cheap early answer; login() itself counts the attempt atomically
            log.warning("login throttled client=%s", client)
            return too_many()
        form = await _form(request)
        if form is None:
            return _too_large()
        name, password = form.get("name", ""), form.get("password", "")
        try:
            token = await asyncio.to_thread(auth.login, name[:64], password[:256], client)  # scrypt: off the event loop
        except TooManyAttempts:
            log.warning("login throttled client=%s", client)
            return too_many()
        if token is None:
            log.warning("login failed user=%r client=%s", name[:64], client)
            return templates.TemplateResponse(request, "login.html", {"title": title, "error": "Wrong name or password."},
                                              status_code=401)
        log.info("login user=%s client=%s", name, client)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie,
                            max_age=int(auth.lifetime))
        return response

    async def logout(request: Request) -> Response:
        session = session_of(request)
        if session is not None and request.headers.get("x-csrf-token") == session.csrf:
            auth.logout(request.cookies.get(COOKIE))
            log.info("logout user=%s", session.user)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        state = json.loads(hub.snapshot_json())
        response = templates.TemplateResponse(request, "dashboard.html", {
            "title": title, "user": session.user, "csrf": session.csrf, "state": state,
            "commands_enabled": commander.enabled})
        response.headers["cache-control"] = "no-store"
        return response

    async def state(request: Request) -> Response:
        if session_of(request) is None:
            return JSONResponse({"error": "log in"}, status_code=401)
        return Response(hub.snapshot_json(), media_type="application/json", headers={"cache-control": "no-store"})

    async def events(request: Request) -> Response:
        if session_of(request) is None:
            return JSONResponse({"error": "log in"}, status_code=401)
        def logged_in() -> bool:  # checked at every push and heartbeat
            return session_of(request) is not None

        return StreamingResponse(_stream(request, hub, push_interval, logged_in), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def prepare(request: Request) -> Response:
        session, body = await _command_request(request, session_of(request))
        if isinstance(body, Response):
            return body
        try:  # the audit log's fsync: off the event loop
            pending = await asyncio.to_thread(commander.prepare, session.user, str(body.get("gate", ""))[:64], str(body.get("command", ""))[:32],
                                        _text(body.get("mode")), _text(body.get("direction")) or "in")
        except CommandRefused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "token": pending.token, "question": pending.question})

    async def confirm(request: Request) -> Response:
        session, body = await _command_request(request, session_of(request))
        if isinstance(body, Response):
            return body
        try:
            entry = await asyncio.to_thread(commander.confirm, session.user, str(body.get("token", ""))[:64])
        except CommandRefused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "nonce": entry["nonce"]})

    routes = [
        Route("/", page),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/state", state),
        Route("/events", events),
        Route("/api/commands/prepare", prepare, methods=["POST"]),
        Route("/api/commands/confirm", confirm, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


async def _stream(request: Request, hub: Hub, push_interval: float,
                  logged_in: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The venue's state whenever it changes (at most every ``push_interval``) and every second,
    for as long as the session lasts: a logout or an expired session ends the stream within a
    heartbeat (the page's reconnection then gets 401)."""
    changed = hub.watch()
    try:
        yield b"retry: 1000\n\n"
        while not hub.closed and logged_in():
            changed.clear()
            yield b"data: " + hub.snapshot_json() + b"\n\n"
            sent = time.monotonic()
            try:
                await asyncio.wait_for(changed.wait(), HEARTBEAT)
            except TimeoutError:
                pass
            if hub.closed or await request.is_disconnected():
                return
            pause = push_interval - (time.monotonic() - sent)
            if pause > 0:
                await asyncio.sleep(pause)  # coalesce a burst of changes into one push
    finally:
        hub.unwatch(changed)


async def _body(request: Request, limit: int = MAX_FORM) -> bytes | None:
    """The request's body, or None when it is larger than ``limit``: refused by its
    Content-Length before anything is read, or as soon as the stream passes the limit (a chunked
    body), so a client cannot make the dashboard hold more than ``limit`` bytes of it."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _too_large() -> Response:
    return JSONResponse({"ok": False, "error": "request too large"}, status_code=413, headers={"connection": "close"})


async def _form(request: Request) -> dict[str, str] | None:
    """The login form's fields (first value of each), or None when the body is too large."""
    body = await _body(request)
    if body is None:
        return None
    return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items() if values}


async def _command_request(request: Request, session: Session | None) -> tuple[Any, Any]:
    if session is None:
        return None, JSONResponse({"ok": False, "error": "log in"}, status_code=401)
    if request.headers.get("x-csrf-token") != session.csrf:
        return None, JSONResponse({"ok": False, "error": "stale page: reload it"}, status_code=403)
    body = await _body(request)
    if body is None:
        return None, _too_large()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return None, JSONResponse({"ok": False, "error": "bad request"}, status_code=400)
    return session, data


def _text(value: Any) -> str | None:
    return value[:32] if isinstance(value, str) and value else None
