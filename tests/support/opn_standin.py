"""A stand-in for the OPN Ticket Engine, written from its published documentation
(../shared/reference/opn-ticket-engine.txt), for the bridge's tests: a real HTTP server in its
own process (so a test can kill it with SIGKILL and start it again on the same port and data),
with its state in SQLite, committed before each answer is written.

- ``POST /stream`` with ``X-Api-Key`` (else 403 ``{"message": "Forbidden"}``): a JSON array of
  1-5000 ``{"action", "data"}``; each action checked field by field against the documentation's
  table (required, exclusive and optional fields; every field's type and validation; a field the
  table does not list for that action is refused) and the ticket lifecycle ("Requires" /
  "Blocked On"), processed in order; answered ``200 success``, ``200 multi`` or
  ``400 all_actions_invalid`` in the documented shapes, every accepted action with its
  ``actionPromise``.
- ``GET /actions/{promise}``: the action's status.

Run: ``python -m tests.support.opn_standin --port P --db FILE --api-key-file FILE``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_ACTIONS = 5000
CURRENCIES = {"EUR", "USD", "GBP", "CHF", "JPY", "AUD", "CAD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "NZD", "ZAR"}
EVENT_FIELDS = ("eventName", "shopUrl", "coverImageUrl", "coverMediaUrl", "defaultNftImageUrl", "defaultNftMediaUrl",
                "latitude", "longitude", "startTime", "endTime", "callbackUrl")
# action: (required, exclusive, optional), from the Stream page's table
SCHEMA: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "newEvent": (("eventId", "currency"), (), EVENT_FIELDS),
    "updateEvent": (("eventId",), (), ("currency", *EVENT_FIELDS)),
    "soldTicket": (("eventId", "ticketId", "userId", "price"), (),
                   ("imageUrl", "mediaUrl", "orderTime", "to", "metadataAttributes", "name", "description")),
    "updateTicket": ((), ("ticketId", "nftId"), ("imageUrl", "mediaUrl", "metadataAttributes")),
    "resoldTicket": (("userId", "price"), ("ticketId", "nftId"), ("orderTime", "to")),
    "scannedTicket": ((), ("ticketId", "nftId"), ("orderTime",)),
    "checkedInTicket": ((), ("ticketId", "nftId"), ("orderTime",)),
    "claimedTicket": ((), ("ticketId", "nftId"), ("orderTime", "to", "userId")),
    "invalidatedTicket": ((), ("ticketId", "nftId"), ("orderTime",)),
}
# action: (requires, blocked on), from the Ticket Lifecycle table
LIFECYCLE = {
    "resoldTicket": ({"soldTicket"}, {"scannedTicket", "checkedInTicket", "invalidatedTicket", "claimedTicket"}),
    "scannedTicket": ({"soldTicket"}, {"checkedInTicket", "invalidatedTicket", "claimedTicket"}),
    "checkedInTicket": ({"soldTicket"}, {"checkedInTicket", "invalidatedTicket", "claimedTicket"}),
    "invalidatedTicket": ({"soldTicket"}, {"checkedInTicket", "invalidatedTicket", "claimedTicket"}),
    "claimedTicket": ({"soldTicket", "checkedInTicket"}, {"invalidatedTicket", "claimedTicket"}),
}
_UINT64 = 2**64
_NFT = re.compile(r"^[A-Z]+-[0-9]+-[0-9]+\Z")
_PRICE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,2})?\Z")
_WALLET = re.compile(r"^0x[0-9a-fA-F]{40}\Z")


def _text(limit: int) -> Any:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            return "must be a string"
        return f"must be at most {limit} characters" if len(v) > limit else ""
    return check


def _url(v: Any) -> str:
    if not isinstance(v, str):
        return "must be a string"
    if v == "":
        return ""
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(v) > 255:
        return "must be an http/https url of up to 255 characters"
    return ""


def _uint64(v: Any) -> str:
    return "" if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _UINT64 else "must be an unsigned 64-bit integer"


def _float(low: float, high: float) -> Any:
    def check(v: Any) -> str:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
        return "" if ok else f"must be a number from {low} to {high}"
    return check


def _pattern(rx: re.Pattern[str], what: str) -> Any:
    return lambda v: "" if isinstance(v, str) and rx.match(v) else f"must be {what}"


def _attributes(v: Any) -> str:
    try:
        value = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return "must be JSON"
    return "" if isinstance(value, list) and all(isinstance(a, dict) for a in value) else "must be a list of attributes"


TYPES: dict[str, Any] = {
    "eventId": _text(255), "eventName": _text(255), "currency": lambda v: "" if v in CURRENCIES else "must be a supported ISO 4217 code",
    "shopUrl": _url, "coverImageUrl": _url, "coverMediaUrl": _url, "defaultNftImageUrl": _url, "defaultNftMediaUrl": _url,
    "latitude": _float(-90, 90), "longitude": _float(-180, 180), "startTime": _uint64, "endTime": _uint64,
    "callbackUrl": _url, "ticketId": _text(255), "userId": _text(255), "nftId": _pattern(_NFT, "a valid NFT id"),
    "imageUrl": _url, "mediaUrl": _url, "price": _pattern(_PRICE, "a valid price string"), "orderTime": _uint64,
    "to": _pattern(_WALLET, "a blockchain wallet address"), "metadataAttributes": _attributes,
    "metadataTemplateId": _pattern(re.compile(r"^[0-9a-f-]{36}\Z"), "a uuid"), "name": _text(128), "description": _text(10240),
}


def validate(item: Any) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    """(action, data, errors) of one stream item, field by field."""
    if not isinstance(item, dict):
        return "", {}, [{"param": "action", "message": "must be an object"}]
    kind, data = item.get("action"), item.get("data")
    errors = []
    if set(item) - {"action", "data"}:
        errors.append({"param": sorted(set(item) - {"action", "data"})[0], "message": "is not allowed"})
    if not kind:
        return "", data if isinstance(data, dict) else {}, [{"param": "action", "message": "must not be empty"}]
    if kind not in SCHEMA:
        return str(kind), data if isinstance(data, dict) else {}, [{"param": "action", "message": "is not a valid action"}]
    if not isinstance(data, dict):
        return kind, {}, [{"param": "data", "message": "must be an object"}]
    required, exclusive, optional = SCHEMA[kind]
    for name in required:
        if name not in data or data[name] in (None, ""):
            errors.append({"param": name, "message": "is a required field"})
    if exclusive:
        given = [n for n in exclusive if data.get(n) not in (None, "")]
        if len(given) != 1:
            errors.append({"param": exclusive[0], "message": f"exactly one of {', '.join(exclusive)} is required"})
    if kind == "claimedTicket" and not (data.get("to") or data.get("userId")):
        errors.append({"param": "to", "message": "to or userId is required"})
    for name, value in data.items():
        if name not in (*required, *exclusive, *optional):
            errors.append({"param": name, "message": f"is not a field of {kind}"})
        elif value is not None:
            problem = TYPES[name](value)
            if problem:
                errors.append({"param": name, "message": problem})
    return kind, data, errors


class Engine:
    def __init__(self, db: Path, api_key: str) -> None:
        self.api_key = api_key
        self.conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript("""
            CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, data TEXT);
            CREATE TABLE IF NOT EXISTS tickets (ticket_id TEXT PRIMARY KEY, event_id TEXT, history TEXT);
            CREATE TABLE IF NOT EXISTS actions (promise TEXT PRIMARY KEY, action TEXT, event_id TEXT, ticket_id TEXT,
                                                data TEXT);
            CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, actions INTEGER, accepted INTEGER);
        """)
        self.lock = threading.Lock()

    def stream(self, items: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ACTIONS:
            return 400, {"status": "error", "error": "invalid_request", "message": f"a list of 1-{MAX_ACTIONS} actions"}
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            results = [self._one(item) for item in items]
            accepted = sum(r["status"] == "success" for r in results)
            self.conn.execute("INSERT INTO requests (actions, accepted) VALUES (?,?)", (len(items), accepted))
            self.conn.execute("COMMIT")  # durable before the answer is written
        if accepted == len(results):
            return 200, {"status": "success", "data": results}
        if accepted:
            return 200, {"status": "multi", "data": results}
        return 400, {"status": "error", "error": "all_actions_invalid", "message": "The requested actions are all invalid",
                     "data": results}

    def _one(self, item: Any) -> dict[str, Any]:
        kind, data, errors = validate(item)
        ident = {k: data[k] for k in ("eventId", "ticketId", "nftId") if isinstance(data.get(k), str)}
        if not errors:
            errors = self._lifecycle(kind, data)
        if errors:
            return {"status": "error", "errors": errors, "action": kind, **ident, "requestData": item if kind == "" else data}
        promise = str(uuid.uuid4())
        self._apply(kind, data)
        self.conn.execute("INSERT INTO actions (promise, action, event_id, ticket_id, data) VALUES (?,?,?,?,?)",
                          (promise, kind, data.get("eventId"), data.get("ticketId"), json.dumps(data)))
        return {"status": "success", "action": kind, **ident, "actionPromise": promise}

    def _lifecycle(self, kind: str, data: dict[str, Any]) -> list[dict[str, str]]:
        if kind == "newEvent":
            if self.conn.execute("SELECT 1 FROM events WHERE event_id=?", (data["eventId"],)).fetchone():
                return [{"param": "eventId", "message": "already exists"}]
            return []
        if kind == "updateEvent" or kind == "soldTicket":
            if not self.conn.execute("SELECT 1 FROM events WHERE event_id=?", (data["eventId"],)).fetchone():
                return [{"param": "eventId", "message": "event_not_found"}]
            if kind == "soldTicket" and self.conn.execute("SELECT 1 FROM tickets WHERE ticket_id=?", (data["ticketId"],)).fetchone():
                return [{"param": "ticketId", "message": "already exists"}]
            return []
        if "nftId" in data:
            return [{"param": "nftId", "message": "ticket_not_found"}]  # this stand-in mints no NFTs
        row = self.conn.execute("SELECT history FROM tickets WHERE ticket_id=?", (data["ticketId"],)).fetchone()
        if row is None:
            return [{"param": "ticketId", "message": "ticket_not_found"}]
        history = set(json.loads(row[0]))
        requires, blocked = LIFECYCLE.get(kind, (set(), set()))
        if not requires <= history:
            return [{"param": "action", "message": f"requires {', '.join(sorted(requires - history))}"}]
        if history & blocked:
            return [{"param": "action", "message": f"blocked on {', '.join(sorted(history & blocked))}"}]
        return []

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "newEvent":
            self.conn.execute("INSERT INTO events VALUES (?,?)", (data["eventId"], json.dumps(data)))
        elif kind == "soldTicket":
            self.conn.execute("INSERT INTO tickets VALUES (?,?,?)", (data["ticketId"], data["eventId"], json.dumps([kind])))
        elif "ticketId" in data:
            row = self.conn.execute("SELECT history FROM tickets WHERE ticket_id=?", (data["ticketId"],)).fetchone()
            self.conn.execute("UPDATE tickets SET history=? WHERE ticket_id=?",
                              (json.dumps(json.loads(row[0]) + [kind]), data["ticketId"]))

    def action(self, promise: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute("SELECT action, event_id, ticket_id FROM actions WHERE promise=?", (promise,)).fetchone()
        if row is None:
            return None
        out = {"promise": promise, "action": row[0], "status": "waiting_broadcast"}
        out.update({k: v for k, v in (("eventId", row[1]), ("ticketId", row[2])) if v})
        return out


def make_handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("X-Api-Key") != engine.api_key:
                self._send(403, {"message": "Forbidden"})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if not self._authorised():
                return
            if self.path != "/stream":
                self._send(404, {})
                return
            try:
                items = json.loads(body)
            except ValueError:
                self._send(400, {"status": "error", "error": "invalid_json", "message": "body is not JSON"})
                return
            self._send(*engine.stream(items))

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.startswith("/actions/"):
                found = engine.action(self.path[len("/actions/"):])
                self._send(200, found) if found else self._send(404, {})
            else:
                self._send(404, {})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--api-key-file", required=True)
    args = parser.parse_args()
    engine = Engine(Path(args.db), Path(args.api_key_file).read_text().strip())
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(engine))
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
