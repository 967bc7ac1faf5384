"""The screen at the lane: one page served on loopback (``[display] port``) for Chromium in kiosk
mode on the lane's Pi (``systemd/gate-display-kiosk.service``; docs/dashboard.md).

It shows waiting / checking / welcome (in the ticket class's colour) / refused (the reason in
words, from ``display_text``) / lane closed / out of order / emergency. ``publish`` is a decision
loop listener: on the loop's thread it only updates a small state under a lock and wakes the web
server's event loop (``call_soon_threadsafe``: a byte into a non-blocking pipe), so the decision
loop never waits for a browser. The page holds a server-sent-events stream and redraws within
milliseconds of the decision; when the stream breaks (the lane stopped) the page itself shows
"out of order".

Served by Starlette under uvicorn in one thread of the lane's process, bound to 127.0.0.1 only;
no ticket, key or hash is ever sent to the page: only the screen, the words and the colour.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gate.field import display_text

log = logging.getLogger(__name__)

HERE = Path(__file__).parent / "display"
CHECKING_FOR = 2.0  # seconds a "checking" screen stays without a decision
DEFAULT_COLOUR = "#1f8f4e"


class DisplaySettings(Protocol):
    """``[display]`` of gate.toml (``gate.config.DisplayConfig``)."""

    port: int
    language: str
    class_colours: dict[str, str]
    refused_seconds: float
    welcome_seconds: float


@dataclass
class DisplayState:
    """What the screen shows, from the loop's events. Pure: the times are given (``now``,
    monotonic seconds, for how long a screen stays; ``wall``, unix seconds, for the decision's
    time the page measures its delay from)."""

    language: str = "en"
    class_colours: dict[str, str] = field(default_factory=dict)
    refused_seconds: float = 3.0
    welcome_seconds: float = 8.0
    mode: str = "normal"
    emergency: bool = False
    held: str = ""
    flash: dict[str, Any] | None = None  # welcome / refused / checking over the lane's base screen
    flash_until: float = 0.0
    decided_at: float | None = None  # wall time of the decision shown (the page measures its own delay)

    def on_event(self, kind: str, payload: dict[str, Any], now: float, wall: float) -> bool:
        """Take one loop event; whether the screen changed."""
        if kind == "decision":
            self.decided_at = wall
            if payload.get("accepted"):
                details = payload.get("details") or {}
                product = details.get("product") if isinstance(details, dict) else None
                out = payload.get("direction") == "out"
                self._flash({"screen": "goodbye" if out else "welcome", "title": self._t("goodbye" if out else "welcome"),
                             "subtitle": self._t("goodbye.sub" if out else "welcome.sub"),
                             "ticket_class": str(product)[:32] if product else "",
                             "colour": self.class_colours.get(str(product), self.class_colours.get("default", DEFAULT_COLOUR))},
                            now + self.welcome_seconds)
            else:
                reason = str(payload.get("reason", "error"))
                self._flash({"screen": "refused", "title": self._t("refused"),
                             "subtitle": display_text.reason_text(self.language, reason), "reason": reason[:32]},
                            now + self.refused_seconds)
            return True
        if kind == "scan":  # a reader has a ticket (the loop's optional early event)
            self._flash({"screen": "checking", "title": self._t("checking"), "subtitle": ""}, now + CHECKING_FOR)
            return True
        if kind == "record" and payload.get("kind") in ("passage", "revert"):
            if self.flash is not None and self.flash["screen"] in ("welcome", "goodbye"):
                self.flash = None
                return True
            return False
        if kind == "mode":  # staff changed the lane: what was on the screen is over
            self.mode = str(payload.get("mode", "normal"))
            self.flash = None
            return True
        if kind == "alarm" and payload.get("alarm") == "fire":
            self.emergency = bool(payload.get("active"))
            self.flash = None
            return True
        if kind == "hold":
            self.held = str(payload.get("held") or "")
            return True
        return False

    def _flash(self, screen: dict[str, Any], until: float) -> None:
        self.flash, self.flash_until = screen, until

    def _t(self, key: str) -> str:
        return display_text.text(self.language, key)

    def base(self) -> dict[str, Any]:
        """The screen when nothing is happening."""
        if self.emergency:
            return {"screen": "emergency", "title": self._t("emergency"), "subtitle": self._t("emergency.sub")}
        if self.mode == "locked":
            return {"screen": "closed", "title": self._t("closed"), "subtitle": self._t("closed.sub")}
        if self.held:
            return {"screen": "out_of_order", "title": self._t("out_of_order"), "subtitle": display_text.reason_text(self.language, "recovering")}
        if self.mode == "free":
            return {"screen": "free", "title": self._t("free"), "subtitle": ""}
        return {"screen": "waiting", "title": self._t("waiting"), "subtitle": self._t("waiting.sub")}

    def view(self, now: float) -> dict[str, Any]:
        """The page's message: the screen now, the base to return to, and in how many ms."""
        base = self.base()
        flash = self.flash if self.flash is not None and now < self.flash_until and not self.emergency else None
        remaining = int((self.flash_until - now) * 1000) if flash else 0
        return {"screen": flash or base, "base": base, "remaining_ms": remaining, "decided_at": self.decided_at}


class LaneDisplay:
    """The display's web server (a thread) and the loop listener that feeds it."""

    def __init__(self, settings: DisplaySettings, gate_id: str) -> None:
        self.settings = settings
        self.gate_id = gate_id
        self.state = DisplayState(settings.language, dict(settings.class_colours), settings.refused_seconds,
                                  settings.welcome_seconds)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pages: set[asyncio.Event] = set()  # one per open page (on the server's loop)
        self.closing = False
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.version = 0

    # --- the decision loop's side (its thread): never blocks ---------------------------------------

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            if not self.state.on_event(kind, payload, time.monotonic(), time.time()):
                return
            self.version += 1
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_pages)
            except RuntimeError:  # the server's loop is closed (stopping)
                pass

    def _wake_pages(self) -> None:
        for event in self._pages:
            event.set()

    def view(self) -> dict[str, Any]:
        with self._lock:
            return self.state.view(time.monotonic())

    # --- the server's side ---------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Serve on 127.0.0.1:port in a thread; OSError when the port cannot be had."""
        import uvicorn

        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.settings.port, log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        display = self

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                display.attach_loop(asyncio.get_running_loop())
                await super().startup(sockets)

            async def shutdown(self, sockets: Any = None) -> None:
                display.closing = True  # every page's stream ends, so uvicorn need not cut them
                display.publish_nothing()
                await super().shutdown(sockets)

        self._server = Server(config)
        self._thread = threading.Thread(target=self._server.run, name="lane-display", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.02)
        if not self._server.started:
            self.close()
            raise OSError(f"lane display not serving on 127.0.0.1:{self.settings.port} (port in use?)")
        log.info("lane display serving url=http://127.0.0.1:%d/ language=%s", self.settings.port, self.settings.language)

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None:
        """The web server's event loop (tests freeze it to show the lane does not wait for it)."""
        return self._loop

    def publish_nothing(self) -> None:
        """Wake every page's stream (on the server's loop)."""
        self._wake_pages()

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response, StreamingResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
        from starlette.templating import Jinja2Templates

        templates = Jinja2Templates(directory=str(HERE))
        offline = {"screen": "out_of_order", "title": display_text.text(self.settings.language, "out_of_order"),
                   "subtitle": display_text.text(self.settings.language, "out_of_order.sub")}

        async def page(request: Request) -> Response:
            return templates.TemplateResponse(request, "lane.html", {
                "gate": self.gate_id, "language": self.settings.language, "view": self.view(), "offline": offline},
                headers=_HEADERS)

        async def events(request: Request) -> Response:
            return StreamingResponse(self._stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

        return Starlette(routes=[Route("/", page), Route("/events", events),
                                 Mount("/static", StaticFiles(directory=str(HERE)), name="static")])

    async def _stream(self) -> AsyncIterator[bytes]:
        changed = asyncio.Event()
        self._pages.add(changed)
        try:
            yield b"retry: 500\n\n"
            while not self.closing:
                changed.clear()
                yield b"data: " + json.dumps(self.view()).encode() + b"\n\n"
                try:
                    await asyncio.wait_for(changed.wait(), 5.0)
                except TimeoutError:
                    pass  # the same screen again: a page whose stream broke finds out
        finally:
            self._pages.discard(changed)


_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}
