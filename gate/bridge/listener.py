"""The bridge on the venue bus: every lane's ledger records in, signed bundles and deltas out.

It logs in as its own user (``venue-bridge`` in the shipped ACL) with a persistent session
(``clean_session=False``): while the bridge is down the broker keeps the lanes' records for it.
Records are read as a lane reads its peers' (``gate.sync.messages.decode_records``, then
``gate.trust.records.open_record`` against the roster: for this venue, from that gate, signed by
its key) and stored in the bridge's database inside paho's callback, before paho acknowledges
the message: a bridge killed at any moment loses nothing the broker still holds.

What a persistent session cannot cover (a broker restarted without persistence, a queue limit
reached) the catch-up covers, as between lanes: the bridge asks one online lane, by turns, for
what it lacks (``sync/request/venue-bridge``); the answer comes on ``sync/reply/venue-bridge/<gate>``.

The bridge's own status goes on ``bridge/status``, retained, as a lane's goes on
``gates/<gate>/status`` and in the same shape (``{"v": 2, "gate": "venue-bridge", "state":
"online", …}``); the broker publishes ``"state": "offline"`` in its place as its Last Will when
the bridge vanishes. Not under ``gates/``: the bridge is not a lane (lanes and dashboards read
every ``gates/+/status`` as one). The lanes' refusals come from ``scans/+`` (QoS 0).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

from gate.config import SyncConfig
from gate.errors import SignedError
from gate.store.ledger import Record
from gate.sync import messages
from gate.sync.client import connect_error, make_client
from gate.sync.messages import MessageError, Topics
from gate.trust.records import open_record
from gate.trust.roster import Roster

log = logging.getLogger(__name__)


class BusListener:
    def __init__(self, settings: SyncConfig, venue: str, roster: Roster, take: Callable[[list[Record]], Any],
                 marks: Callable[[], dict[tuple[str, str], int]], refused: Callable[[str, bytes], Any] | None = None,
                 status: Callable[[], bytes] | None = None) -> None:
        """``take``: stores verified records durably (called on paho's thread); ``marks``: what
        the bridge holds of each stream (for catch-up requests); ``refused``: a roster gate's
        ``scans/`` message (None: not subscribed); ``status``: the bridge's status payload,
        published at each connection (and by ``publish_status``)."""
        self.settings = settings
        self.refused = refused
        self.status_payload = status
        self.venue = venue
        self.roster = roster
        self.take = take
        self.marks = marks
        self.me = settings.username
        self.topics = Topics(settings.topic_root, self.me)
        self.status_topic = status_topic(settings.topic_root)
        self.connected = threading.Event()
        self.counters: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.online: set[str] = set()  # paho's thread changes it: read it through lanes_online()
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._asked = ""
        self._stop = threading.Event()
        self._client: Any = None
        self._catch_up: threading.Thread | None = None

    def start(self) -> None:
        client = make_client(self.settings, self.me, clean_session=False)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a, **k: self._disconnected()
        client.on_connect_fail = lambda c, u: log.warning("broker not reached broker=%s:%d error=%s", self.settings.host,
                                                          self.settings.port, connect_error(sys.exc_info()[1]))
        client.on_message = self._on_message
        client.will_set(self.status_topic, messages.encode_status(self.me, "offline"), qos=1, retain=True)
        self._client = client
        client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive)
        client.loop_start()
        self._catch_up = threading.Thread(target=self._catch_up_loop, name="bridge-catch-up", daemon=True)
        self._catch_up.start()
        log.info("bus listener started broker=%s:%d user=%s tls=%s", self.settings.host, self.settings.port, self.me,
                 self.settings.tls)

    def stop(self) -> None:
        with self._status_lock:  # no online status after the offline one
            self._stop.set()
        if self._client is not None:
            # a clean stop sends no Last Will: say offline before going
            self.publish(self.status_topic, messages.encode_status(self.me, "offline"), retain=True, timeout=3.0)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _disconnected(self) -> None:
        if self.connected.is_set():
            log.warning("broker connection lost")
        self.connected.clear()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            log.error("broker refused the bridge reason=%s user=%s (password file; the ACL's venue-bridge block)", reason, self.me)
            return
        topics = [(self.topics.ledger_all, 1), (self.topics.sync_replies, 1), (self.topics.status_all, 1)]
        if self.refused is not None:
            topics.append((f"{self.settings.topic_root}scans/+", 0))
        client.subscribe(topics)
        self.connected.set()
        self.publish_status()
        log.info("broker connected session_present=%s", bool(getattr(flags, "session_present", False)))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho's thread: read, verify, store; the broker's acknowledgement follows the return."""
        topic, payload = message.topic, bytes(message.payload)
        try:
            sender = self.topics.sender(topic, "ledger")
            if sender is not None:
                self._records(sender, payload)
            elif (scanner := self.topics.sender(topic, "scans")) is not None:
                self._scan(scanner, payload)
            elif self.topics.responder(topic) is not None:
                self._reply(payload)
            else:
                peer = self.topics.status_of(topic)
                if peer is not None:
                    self._status(peer, payload)
        except Exception:  # a bug must not end paho's thread; the catch-up asks again
            log.exception("bus message not taken topic=%s bytes=%d", topic[:200], len(payload))
            self.counters["errors"] += 1

    def _records(self, sender: str, payload: bytes) -> None:
        try:
            sealed = messages.decode_records(payload, sender)
        except MessageError as exc:
            self._refuse(sender, f"malformed: {exc}")
            return
        self._open_and_take(sealed, sender)

    def _scan(self, sender: str, payload: bytes) -> None:
        """A decision of a lane on the roster, for ``refused`` (which reads it strictly)."""
        entry = self.roster.entry(sender)
        if self.refused is None or entry is None or entry.retired:
            return
        self.counters["scans"] += 1
        self.refused(sender, payload)

    def _reply(self, payload: bytes) -> None:
        try:
            reply = messages.decode_reply(payload)
        except MessageError as exc:
            self._refuse("?", f"malformed: {exc}")
            return
        if reply.sealed:
            self._open_and_take(reply.sealed, None)
        if reply.holds is not None:
            self.counters["catch_up_answers"] += 1

    def _open_and_take(self, sealed: list[tuple[str, bytes]], sender: str | None) -> None:
        roster, records = self.roster, []
        for text, signature in sealed:
            try:
                records.append(open_record(text, signature, roster, self.venue, sender))
            except SignedError as exc:
                self._refuse(sender or "catch-up", f"{exc.kind}: {exc}")
        if records:
            added, jobs = self.take(records)
            self.counters["records"] += len(records)
            self.counters["new_records"] += added
            self.counters["jobs"] += jobs

    def _status(self, peer: str, payload: bytes) -> None:
        try:
            state = messages.decode_status_state(payload)
        except MessageError:
            return
        with self._lock:
            (self.online.add if state == "online" else self.online.discard)(peer)

    def lanes_online(self) -> list[str]:
        """A copy of the lanes whose retained status says online (sorted)."""
        with self._lock:
            return sorted(self.online)

    def _refuse(self, sender: str, why: str) -> None:
        kind = why.split(":", 1)[0]
        self.counters["refused"] += 1
        self.refusals[kind] += 1
        if self.refusals[kind] <= 10 or self.refusals[kind] % 1000 == 0:
            log.warning("record refused sender=%s why=%r", sender, why[:200])

    def _catch_up_loop(self) -> None:
        """Every ``catch_up_interval`` (and soon after connecting), ask one online lane of the
        roster, by turns, for every record the bridge lacks."""
        while not self._stop.is_set():
            self.connected.wait(1.0)
            if self._stop.wait(min(2.0, self.settings.catch_up_interval) if self.counters["catch_up_requests"] == 0
                               else self.settings.catch_up_interval):
                return
            try:
                self._ask()
            except Exception:  # a bug or the store: log and ask again next time (a dead thread never asks)
                log.exception("catch-up request failed")
                self.counters["errors"] += 1

    def _ask(self) -> None:
        peers = [g for g in self.lanes_online() if (e := self.roster.entry(g)) is not None and not e.retired]
        client = self._client
        if not peers or not self.connected.is_set() or client is None:
            return
        later = [g for g in peers if g > self._asked]
        self._asked = later[0] if later else peers[0]
        request = messages.Request(self._asked, self.marks(), all=True)
        client.publish(self.topics.sync_request, messages.encode_request(request), qos=1)
        self.counters["catch_up_requests"] += 1
        log.debug("catch-up requested of=%s", self._asked)

    def publish(self, topic: str, data: bytes, retain: bool = True, timeout: float = 10.0) -> bool:
        """Publish (QoS 1) and wait for the broker's acknowledgement; False when not connected."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        info = client.publish(topic, data, qos=1, retain=retain)
        deadline = time.monotonic() + timeout
        try:
            while not info.is_published() and time.monotonic() < deadline and self.connected.is_set():
                info.wait_for_publish(0.2)
        except (RuntimeError, ValueError):  # not queued: the connection went meanwhile
            return False
        return info.is_published()

    def publish_status(self) -> None:
        """The bridge's status, retained, without waiting for the broker (any thread)."""
        client = self._client
        if client is None or self.status_payload is None or not self.connected.is_set():
            return
        payload = self.status_payload()
        with self._status_lock:
            if self._stop.is_set():
                return
            try:
                client.publish(self.status_topic, payload, qos=1, retain=True)
            except (RuntimeError, ValueError):  # the connection went meanwhile: the next one publishes it
                pass

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), **self.counters, "refusals": dict(self.refusals),
                "lanes_online": self.lanes_online()}


def status_topic(topic_root: str) -> str:
    """Where the bridge's retained status goes (``gate/v2/<venue>/bridge/status``)."""
    return f"{topic_root}bridge/status"
