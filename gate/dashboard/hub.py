"""Between the bus's thread and the web's event loop: each message read (``messages``), records
and the bundle verified (the lane's own ``gate.trust`` code), the venue updated under one lock,
and the pages' event streams woken.

Verification (Ed25519) happens before the lock is taken, so a burst of records never holds up a
page. A malformed or forged message is counted, logged (a few per sender, then every 100th) and
dropped: the dashboard goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gate.dashboard import messages
from gate.dashboard.venue import Venue
from gate.errors import MessageError, SignedError
from gate.store.ledger import Record
from gate.sync import messages as bus_messages
from gate.sync.opening import HELD_KEY
from gate.trust import signed
from gate.trust.records import open_record
from gate.trust.roster import Roster

log = logging.getLogger(__name__)

MAX_WAITING = 200_000  # records held until the roster arrives (a persistent session's backlog)


class Hub:
    def __init__(self, venue: Venue, root: str, admin_key: bytes, command_wait: float = 5.0) -> None:
        self.venue = venue
        self.root = root
        self.admin_key = admin_key
        self.command_wait = command_wait
        self.lock = threading.Lock()
        self.closed = False
        self.version = 0  # bumped on every change: the pages' streams compare it
        self._roster = Roster()
        self._waiting: list[tuple[str, bytes, str | None]] = []  # records that came before any roster
        self._watchers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._logged: Counter[str] = Counter()
        self._cache: tuple[int, int, bytes] | None = None
        self.answered: list[Callable[[dict[str, Any]], None]] = []  # a command of this dashboard answered (the audit log)
        # "no answer" is found while a page's snapshot is made, on the web's event loop: its
        # callbacks (the audit log's fsync) run here, one at a time and in order, never on the loop
        self._callbacks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-audit")

    # --- from the bus's thread -----------------------------------------------------------------

    def on_connection(self, connected: bool) -> None:
        with self.lock:
            self.venue.connected = connected
        self._changed()

    def on_message(self, topic: str, payload: bytes) -> None:
        now = time.time()
        root = self.root
        try:
            if (gate := messages.topic_gate(topic, f"{root}gates/", "/status")) is not None:
                status = messages.read_status(payload, gate)
                with self.lock:
                    self.venue.on_status(status, now)
            elif (gate := messages.topic_gate(topic, f"{root}scans/")) is not None:
                scan = messages.read_scan(payload, gate)
                with self.lock:
                    self.venue.on_scan(scan, now)
            elif (gate := messages.topic_gate(topic, f"{root}ledger/")) is not None:
                self._records(bus_messages.decode_records(payload, gate), gate)
            elif topic.startswith(f"{root}sync/reply/"):
                self._records(bus_messages.decode_reply(payload).sealed, None)
            elif topic == f"{root}bundle":
                self._bundle(payload)
            elif (gate := messages.topic_gate(topic, f"{root}gates/", "/cmd/result")) is not None:
                result = messages.read_command_result(payload, gate)
                with self.lock:
                    entry = self.venue.on_command_result(result, now)
                if entry is not None:
                    log.info("command answered gate=%s command=%s nonce=%s ok=%s", gate, entry["command"],
                             entry["nonce"][:12], result.ok)
                    for callback in self.answered:
                        callback(dict(entry))
            else:
                return
        except (messages.BadMessage, MessageError, SignedError) as exc:
            self._malformed(topic, str(exc))
            return
        self._changed()

    def _records(self, sealed: list[tuple[str, bytes]], sender: str | None) -> None:
        with self.lock:
            roster = self._roster
            if not len(roster):
                room = MAX_WAITING - len(self._waiting)
                self._waiting += [(text, sig, sender) for text, sig in sealed[:max(0, room)]]
                return
            sealed = [(text, sig) for text, sig in sealed if not self._counted(text)]
        opened: list[Record] = []
        for text, signature in sealed:
            try:
                opened.append(open_record(text, signature, roster, self.venue.venue, sender))
            except SignedError as exc:
                self._malformed(f"record from {sender or 'a catch-up answer'}", f"{exc.kind}: {exc}")
        with self.lock:
            self.venue.on_records(opened)

    def _counted(self, text: str) -> bool:
        """Whether the record ``text`` names is counted already (a catch-up answer between gates, a
        QoS 1 copy), read from the key at the start of its text as a lane does (``HELD_KEY``): a
        counted key changes nothing whatever the rest says, so its signature is not checked
        (Ed25519 is most of the cost, and paho's thread reads everything else behind it)."""
        key = HELD_KEY.match(text)
        if key is None:
            return False
        seqs = self.venue.seen.get((key[1], key[2]))
        return seqs is not None and int(key[3]) in seqs

    def _bundle(self, payload: bytes) -> None:
        message = signed.read(payload, self.admin_key, self.venue.venue)
        if not isinstance(message, signed.Bundle):
            raise SignedError("wrong_type", "not a bundle")
        with self.lock:
            if self.venue.bundle_version is not None and message.version < self.venue.bundle_version:
                raise SignedError("older", f"bundle {message.version} is older than {self.venue.bundle_version}")
            self._roster = Roster(message.roster)
            self.venue.on_roster(message.version, message.roster, message.zones)
            waiting, self._waiting = self._waiting, []
        log.info("bundle read version=%d gates=%d", message.version, len(message.roster))
        by_sender: dict[str | None, list[tuple[str, bytes]]] = {}
        for text, sig, sender in waiting:
            by_sender.setdefault(sender, []).append((text, sig))
        for sender, sealed in by_sender.items():
            self._records(sealed, sender)

    def _malformed(self, where: str, why: str) -> None:
        kind = where.split("/")[-1] if "/" in where else where
        with self.lock:
            self.venue.malformed[kind] += 1
        self._logged[where] += 1
        n = self._logged[where]
        if n <= 3 or n % 100 == 0:
            log.warning("bus message refused from=%s why=%r count=%d", where[:200], why[:200], n)

    # --- commands --------------------------------------------------------------------------------

    def command_sent(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.venue.on_command_sent(entry)
        self._changed()

    # --- for the web's event loop ------------------------------------------------------------------

    def close(self) -> None:
        """The server is stopping: every page's stream ends (uvicorn waits for them)."""
        self.closed = True
        self._changed()

    def watch(self) -> asyncio.Event:
        """An event set whenever the venue changes (call on the web's event loop)."""
        event = asyncio.Event()
        self._watchers.add((asyncio.get_running_loop(), event))
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers = {(loop, e) for loop, e in self._watchers if e is not event}

    def snapshot_json(self, now: float | None = None) -> bytes:
        """The venue as the page's JSON, made once per change and second for every page."""
        now = time.time() if now is None else now
        with self.lock:
            expired = self.venue.expire_commands(now, self.command_wait)
            if expired:
                self.version += 1
            key = (self.version, int(now))
            if self._cache is not None and self._cache[:2] == key:
                return self._cache[2]
            data = json.dumps(self.venue.snapshot(now), separators=(",", ":")).encode()
            self._cache = (*key, data)
        if expired:
            self._callbacks.submit(self._call_answered, [dict(entry) for entry in expired])
        return data

    def _call_answered(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            for callback in self.answered:
                try:
                    callback(entry)
                except Exception:  # a full disk must not end the worker: said in the log
                    log.exception("command callback failed nonce=%s", str(entry.get("nonce", ""))[:12])

    def _changed(self) -> None:
        with self.lock:
            self.version += 1
        for loop, event in list(self._watchers):
            if event.is_set():  # woken already and not yet pushed: that push reads this change too (the
                continue        # stream clears the event before it takes the snapshot), so no wake-up per message
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that page's loop is closed
                self._watchers.discard((loop, event))
