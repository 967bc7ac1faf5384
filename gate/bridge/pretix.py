"""pretix's REST API as the bridge uses it: enrol as a device, pull what the lanes need, upload
check-ins. Everything pretix answers is hostile until read here (types, sizes, pagination that
stays on pretix's own origin, cursors that are times).

HTTP goes through httpx (connection reuse, strict timeouts, no redirects followed: a redirect
would carry the device token to wherever it points).

The calls, all under ``/api/v1/organizers/{organizer}`` but the first (pretix 2026.8.0, the
same as pretixSCAN and libpretixsync use):

- ``POST /api/v1/device/initialize``: a setup QR's or an initialization token's one use → the
  device's API token (``Authorization: Device …`` from then on);
- ``GET events/{e}/``: ``valid_keys``; ``GET events/{e}/checkinlists/{id}/``: the list;
- ``GET events/{e}/revokedsecrets/?created_since=``, ``blockedsecrets/?updated_since=``,
  ``orders/?modified_since=``: paginated (``next``); the first page's ``X-Page-Generated``
  header is the cursor for the next pull, as libpretixsync keeps it;
- ``POST checkinrpc/redeem/``: ``force: true`` (the lane already decided), the admission's
  stable id as ``nonce`` (pretix takes one nonce once), the lane's time as ``datetime``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gate import __version__
from gate.bridge.transport import insecure
from gate.strictjson import Fields, nesting

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # one page of orders is well below; anything bigger is not pretix
MAX_DEPTH = 32
MAX_PAGES = 100_000
TIMEOUT = 15.0


class PretixError(Exception):
    """A call failed. ``transient``: worth trying again later (network, 5xx, 429, auth that an
    admin may fix); else the request itself is refused for good (404 invalid secret...)."""

    def __init__(self, message: str, transient: bool = True, status: int = 0) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class _Fields(Fields):
    error = PretixError


@dataclass(frozen=True)
class Device:
    """What enrolment gives: kept in the device file (0600), never logged."""

    url: str
    organizer: str
    device_id: int
    api_token: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "organizer": self.organizer, "device_id": self.device_id,
                       "api_token": self.api_token}, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Device":
        try:
            doc = _Fields(json.loads(path.read_text()), str(path))
            device = cls(doc.text("url", max_len=512), doc.text("organizer", max_len=64), doc.integer("device_id"),
                         doc.text("api_token", max_len=256))
            doc.done()
        except (OSError, ValueError) as exc:
            raise PretixError(f"pretix device file {path}: {exc} (enrol first: gate bridge enrol)", transient=False) from None
        return device


def parse_setup_qr(text: str) -> tuple[str, str]:
    """pretix's setup QR code (``{"handshake_version": 1, "url": …, "token": …}``) → (url, token)."""
    try:
        doc = _Fields(json.loads(text), "setup QR")
        version = doc.integer("handshake_version")
        url, token = doc.text("url", max_len=512), doc.text("token", max_len=256)
        doc.accept_rest()
    except ValueError as exc:
        raise PretixError(f"not a pretix setup QR code: {exc}", transient=False) from None
    if version != 1:
        raise PretixError(f"setup QR handshake_version {version} is not 1", transient=False)
    return url, token


def enrol(url: str, token: str, name: str = "gate bridge", timeout: float = TIMEOUT, allow_insecure: bool = False) -> Device:
    """Initialise this bridge as a pretix device with a one-use token (setup QR or the device's
    initialization token in pretix's back office)."""
    base = _base_url(url, allow_insecure)
    import platform

    body = {"token": token, "hardware_brand": "gate", "hardware_model": name[:100], "os_name": platform.system() or "Linux",
            "os_version": platform.release() or "unknown", "software_brand": "gate bridge", "software_version": __version__}
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        answer = fetch(client, "POST", f"{base}/api/v1/device/initialize", f"pretix at {base}", json=body)
    data = _json(answer, "device/initialize")
    if answer.status_code != 200:
        why = "; ".join(f"{k}: {v}" for k, v in data.items())[:300] if isinstance(data, dict) else "no reason given"
        raise PretixError(f"pretix refused the enrolment (HTTP {answer.status_code}: {why})", transient=False,
                          status=answer.status_code)
    doc = _Fields(data, "device/initialize")
    device = Device(base, doc.text("organizer", max_len=64), doc.integer("device_id"), doc.text("api_token", max_len=256))
    doc.accept_rest()
    return device


def _base_url(url: str, allow_insecure: bool = False) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PretixError(f"pretix url must be http(s)://host[:port][/path], got {url[:100]!r}", transient=False)
    why = insecure(url.strip(), allow_insecure)  # the device token would travel in the clear
    if why:
        raise PretixError(f"pretix url: {why}", transient=False)
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer whose body was read no further than ``MAX_BODY``."""

    status_code: int
    headers: httpx.Headers
    content: bytes


def fetch(http: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> Answer:
    """One request, its answer streamed and cut off past ``MAX_BODY`` (``PretixError``): the
    size is checked while reading, not after a hostile server made the bridge hold it all."""
    try:
        with http.stream(method, url, **kwargs) as answer:
            chunks: list[bytes] = []
            size = 0
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY:
                    raise PretixError(f"{what}: answer larger than {MAX_BODY} bytes", transient=False, status=answer.status_code)
                chunks.append(chunk)
            return Answer(answer.status_code, answer.headers, b"".join(chunks))
    except httpx.HTTPError as exc:
        raise PretixError(f"{what}: pretix not reached ({exc.__class__.__name__})") from None


def _json(answer: Answer, what: str) -> Any:
    body = answer.content
    if not body:
        return None
    if nesting(body, MAX_DEPTH) > MAX_DEPTH:
        raise PretixError(f"{what}: answer nested too deeply", transient=False, status=answer.status_code)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PretixError(f"{what}: HTTP {answer.status_code}, not JSON", transient=answer.status_code >= 500,
                          status=answer.status_code) from None


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Redeemed:
    ok: bool
    reason: str = ""  # pretix's error reason when not ok (the request is refused for good)


class PretixClient:
    """One device's API session (thread-confined: each worker makes its own)."""

    def __init__(self, device: Device, timeout: float = TIMEOUT, allow_insecure: bool = False) -> None:
        """``PretixError`` (not transient) when the device's URL is plain http:// to another
        host and the config does not allow it."""
        self.device = device
        self.base = _base_url(device.url, allow_insecure)
        self.org = f"{self.base}/api/v1/organizers/{device.organizer}"
        self._origin = urlsplit(self.base)[:2]
        self.http = httpx.Client(timeout=timeout, follow_redirects=False,
                                 headers={"Authorization": f"Device {device.api_token}",
                                          "User-Agent": f"gate-bridge/{__version__}"})

    def close(self) -> None:
        self.http.close()

    def _get(self, url: str, params: dict[str, Any] | None = None, what: str = "") -> tuple[Any, Answer]:
        if urlsplit(url)[:2] != self._origin:  # a next link elsewhere must not get the token
            raise PretixError(f"{what}: pretix pointed to another origin; not followed", transient=False)
        answer = fetch(self.http, "GET", url, what, params=params)
        if answer.status_code != 200:
            raise PretixError(f"{what}: HTTP {answer.status_code}", transient=answer.status_code in (401, 403, 408, 429)
                              or answer.status_code >= 500, status=answer.status_code)
        return _json(answer, what), answer

    def event(self, slug: str) -> dict[str, Any]:
        data, _ = self._get(f"{self.org}/events/{slug}/", what=f"event {slug}")
        if not isinstance(data, dict):
            raise PretixError(f"event {slug}: not an object")
        return data

    def checkin_list(self, slug: str, list_id: int) -> dict[str, Any]:
        """One check-in list, from the event's lists (the ``pretixscan`` device profile may list
        them but not read one by its id)."""
        lists, _ = self.pages(f"events/{slug}/checkinlists/", {}, f"check-in lists of {slug}")
        for item in lists:
            if item.get("id") == list_id:
                return item
        raise PretixError(f"check-in list {list_id} is not a list of event {slug}", transient=True, status=404)

    def pages(self, path: str, params: dict[str, Any], what: str) -> tuple[list[dict[str, Any]], str | None]:
        """Every result of a paginated list, and the first page's ``X-Page-Generated`` (the
        cursor for the next pull: what changed from then on comes next time)."""
        url: str | None = f"{self.org}/{path}"
        results: list[dict[str, Any]] = []
        generated: str | None = None
        for page in range(MAX_PAGES):
            data, answer = self._get(url, params if page == 0 else None, what)  # type: ignore[arg-type]
            if page == 0:
                generated = cursor(answer.headers.get("X-Page-Generated"))
            doc = _Fields(data, what)
            items = doc.array("results", max_len=100_000)
            nxt = doc.text("next", None, max_len=2048)
            doc.accept_rest()
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise PretixError(f"{what}.results[{i}]: not an object")
                results.append(item)
            if not nxt:
                return results, generated
            url = nxt
        raise PretixError(f"{what}: more than {MAX_PAGES} pages")

    def redeem(self, list_id: int, secret: str, nonce: str, at: float, direction: str) -> Redeemed:
        """Upload one admission the lane already decided (``force``). 201 ok; the same nonce
        again answers ok without a second check-in. ``PretixError`` (transient) when it may
        work later."""
        body = {"lists": [list_id], "secret": secret, "force": True, "nonce": nonce, "datetime": iso(at),
                "type": "exit" if direction == "out" else "entry", "source_type": "barcode", "answers": {}}
        answer = self._post("checkinrpc/redeem/", "redeem", body)
        data = _json(answer, "redeem")
        status = data.get("status") if isinstance(data, dict) else None
        if answer.status_code in (200, 201) and status == "ok":
            return Redeemed(True)
        reason = data.get("reason") if isinstance(data, dict) else None
        return Redeemed(False, f"HTTP {answer.status_code} {str(reason)[:64] if reason else 'refused'}")

    def failed_checkin(self, slug: str, list_id: int, body: dict[str, Any]) -> Redeemed:
        """Upload one refusal (``gate.bridge.refusals.failed_checkin`` makes ``body``). 201
        stored; the same nonce again answers 201 without a second entry. A 400 (a field pretix
        does not take) or 404 (no such list) is refused for good."""
        answer = self._post(f"events/{slug}/checkinlists/{list_id}/failed_checkins/", "failed_checkins", body)
        if answer.status_code == 201:
            return Redeemed(True)
        data = _json(answer, "failed_checkins")
        why = "; ".join(f"{k}: {v}" for k, v in data.items())[:200] if isinstance(data, dict) else "refused"
        return Redeemed(False, f"HTTP {answer.status_code} {why}")

    def _post(self, path: str, what: str, body: dict[str, Any]) -> Answer:
        """A POST whose failure may pass (401/403 an admin fixes, 408, 429, 5xx) raises a
        transient ``PretixError``; any other answer is the caller's to read."""
        answer = fetch(self.http, "POST", f"{self.org}/{path}", what, json=body)
        if answer.status_code in (401, 403, 408, 429) or answer.status_code >= 500:
            raise PretixError(f"{what}: HTTP {answer.status_code}", status=answer.status_code)
        return answer


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time with its offset, as pretix writes them; None for anything else (a time
    without an offset cannot be compared with pretix's, and text is not compared as text)."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None and at.utcoffset() is not None else None


def cursor(value: str | None) -> str | None:
    """An ``X-Page-Generated`` header or a stored cursor, taken only when it is a time with its
    offset (it goes back into a query); normalised to ISO 8601."""
    at = parse_time(value)
    return at.isoformat() if at is not None else None


def positions(orders: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Each order's positions with the order's code and status, read strictly (what the bridge
    uses; every other field pretix sends is accepted and left alone), and how many were skipped:
    one malformed order or position must not stop the others (nor, behind them, revocations)."""
    out: list[dict[str, Any]] = []
    skipped = 0
    for i, order in enumerate(orders):
        try:
            doc = _Fields(order, f"orders[{i}]")
            code = doc.text("code", max_len=32)
            status = doc.text("status", max_len=4)
            items = doc.objects("positions", [])
            doc.accept_rest()
        except (PretixError, ValueError, TypeError):
            skipped += 1
            continue
        for p in items:
            try:
                row = {"order": code, "status": status, "secret": p.text("secret", max_len=1024),
                       "id": p.integer("id", minval=0), "positionid": p.integer("positionid", 0, minval=0),
                       "item": p.integer("item", minval=0), "variation": p.integer("variation", 0, minval=0),
                       "subevent": p.integer("subevent", 0, minval=0), "canceled": p.boolean("canceled", False)}
                p.accept_rest()
            except (PretixError, ValueError, TypeError):
                skipped += 1
                continue
            out.append(row)
    return out, skipped
