"""The gate's side of the venue bus: outbox, merge of peers' records, catch-up, status.

Two threads meet here and only through a queue. paho-mqtt's network thread receives messages,
verifies peers' records (JSON and Ed25519 cost the lane nothing there), and queues them, then
wakes the decision loop (once: a wake-up already pending is not posted again, so a flood of
messages is one event in the loop's queue, never a line of them in front of a scan).
Everything that touches the ledger happens in ``pump``, which the decision loop calls on its
own thread after every turn: the loop stays the one owner of the database (DESIGN §7).

``pump`` does a bounded amount of work per turn: queued peers' records are merged in batches,
each one transaction, until ``MERGE_BUDGET`` is spent; what is left waits for the next turn (the
loop is woken for it), so a scan never waits behind a backlog of more than one budget.

Nothing a gate records is lost while the broker is away: the ledger itself is the outbox. The
mark ``published`` (kept in the database) is the seq up to which the broker acknowledged this
gate's records; after a reconnect or a restart everything above it is published again, and
peers drop what they already hold (records are facts keyed by ``(origin, epoch, seq)``). A
gap in a peer's records is asked of one named peer, which answers to the asker alone.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from typing import Any, Callable

from gate.config import SyncConfig
from gate.errors import SignedError
from gate.store import Store
from gate.store.ledger import MergeResult, Record
from gate.store.state import PUBLISHED_MARK
from gate.sync import messages
from gate.sync.messages import MessageError, Topics
from gate.sync.opening import (POOL_MIN_BYTES, Answered, Opened, Openers, Unopened, open_ledger_message, open_reply,
                               openers_for_this_machine)
from gate.trust.records import open_record
from gate.trust.roster import Roster

log = logging.getLogger(__name__)

MAX_INFLIGHT = 8  # ledger messages handed to paho and not yet acknowledged
MARK_SAVE_INTERVAL = 1.0  # seconds; a mark lost in a crash only means a few duplicates
REQUEST_MIN_INTERVAL = 1.0  # seconds between catch-up requests triggered by gaps
ANSWER_MIN_INTERVAL = 1.0  # seconds: one answer per asker at most this often (a flood of requests costs one)
ANSWER_BUDGET = 0.003  # seconds of answering per turn of the loop (one batch at least): a scan waits behind no more
ANSWER_WAIT = 5.0  # seconds: a request with no answer message for so long is asked again (of the next peer in turn)
QUIET = 0.5  # seconds without peers' records after a reconnect: the broker's queue for this gate is taken in
MAX_COPIES_CHECKED = 16  # differing copies of held records verified per batch (~70 µs each): the rest refused unchecked
MERGE_BUDGET = 0.003  # seconds of merging per turn of the loop: what a scan may wait behind a backlog
MERGE_BATCH = (16, 2000)  # records per merge transaction: at least, at most (sized to the budget in between)
# After a turn that merged what was queued, what comes next waits this long to be merged, so a
# busy venue's records (one a message) go in one transaction per interval instead of one each:
# a transaction is a WAL commit and, every thousand pages, a checkpoint with its fsync. At a
# quiet venue a record that comes after a longer pause is merged at once.
MERGE_INTERVAL = 0.010  # seconds
MAX_OPENING = 8  # large messages handed to workers and not yet taken in by the loop: what memory holds of a catch-up
LANE_WAIT = 0.25  # seconds the network thread waits at most for a scan's decision before it goes on
RECOVERING = "recovering"  # state: this database is new; its gate's past is asked of the venue


class VenueSync:
    def __init__(
        self,
        settings: SyncConfig,
        gate_id: str,
        store: Store,
        *,
        venue: str = "",
        wake: Callable[[], None] = lambda: None,
        status: Callable[[], dict[str, Any]] = dict,
        on_bundle: Callable[[str, bytes], None] | None = None,
        on_command: Callable[[bytes], dict[str, Any]] | None = None,
        on_hold: Callable[[str | None], None] = lambda reason: None,
        client_id: str | None = None,
        scans_clear: threading.Event | None = None,
        openers: int | None = None,
    ) -> None:
        """``on_bundle`` takes signed bundles and deltas (``"bundle" | "delta"``, payload: the
        bundle worker); ``on_command`` carries out a signed command and gives the reply's fields
        (``gate.lane.control.LaneControl.on_command``); ``on_hold`` holds the lane's admissions
        with a reason, or lets them go (None), while a new database recovers the gate's past;
        all are called on the loop's thread. ``scans_clear`` (``DecisionLoop.scans_clear``) is
        set while no scan waits: paho's thread opens peers' records only then. ``openers``: worker
        processes that open large messages (None: ``openers_for_this_machine``)."""
        self.settings = settings
        self.gate_id = gate_id
        self.venue = venue
        self.store = store
        self.ledger = store.ledger
        self.state = store.state
        self.epoch = store.epoch
        self.roster = Roster(store.trust.roster())  # swapped whole when a bundle brings a new one
        self._roster_changed = False
        self.topics = Topics(settings.topic_root, gate_id)
        self.wake = wake
        self.status = status
        self.client_id = client_id or f"gate-{settings.topic_root.strip('/').replace('/', '-')}-{gate_id}"
        self.connected = False
        self.on_merged: list[Callable[[list[Any]], None]] = []  # peers' new records (loop thread)
        self.on_bundle = on_bundle
        self.on_command = on_command
        self.counters = {"received": 0, "merged": 0, "duplicates": 0, "clashes": 0, "conflicts": 0, "refused": 0}
        self.refusals: Counter[str] = Counter()  # refused peer records and messages, by why (the status shows them)
        self.brokers = settings.brokers or ((settings.host, settings.port),)  # tried in turn (failover)
        self._broker = 0
        self._connect_failures = 0
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_pending = False  # a wake-up is in the loop's queue: the next pump takes all queued
        self._carried: deque[tuple[Any, ...]] = deque()  # taken from the queue, left for the next turn
        self._take_after = float("-inf")  # queued events wait until then (MERGE_INTERVAL)
        self.scans_clear = scans_clear
        self._merge_seconds_per_record = 50e-6  # measured as merges run: sizes the batches to the budget
        self._client: Any = None
        self._published = store.state.get(PUBLISHED_MARK)  # acknowledged by the broker
        self._saved_mark = self._published
        self._mark_saved_at = 0.0
        self._acked_ranges: list[tuple[int, int]] = []
        self._send_from = self._published  # next publish starts above this seq
        self._inflight: dict[int, tuple[int, int]] = {}  # mid → (first, last) seq
        self._last_request = float("-inf")
        self._next_status = 0.0
        self._next_catch_up = float("inf")
        self.online: set[str] = set()  # peers whose retained status says online
        self._status_at: dict[str, float] = {}  # when each peer's last status came (monotonic)
        self._want_catch_up = False  # connected, and no peer was online to ask yet
        self._new_peers: set[str] = set()  # peers that answered while recovering themselves
        self._asked = ""  # the peer the last request went to
        self._answer_arriving = float("-inf")  # when the peer asked last brought records of its answer
        self._catch_up_when_quiet: float | None = None  # reconnected at: ask once the broker's queue is taken in
        self._last_peer_records = float("-inf")
        self._answers: dict[str, list[list[Any]]] = {}  # asker → streams still to send: [origin, epoch, after, top]
        self._answer_holds: dict[str, dict[tuple[str, str], int]] = {}
        self._answered_at: dict[str, float] = {}
        self.on_hold = on_hold
        self.recovering = store.state.get(RECOVERING, 0) == 1
        self._records_held = self.ledger.count() if self.recovering else 0  # counted on while recovering
        self._held_tops = self.ledger.marks()  # what merge took in: the network thread skips these (see _open)
        self.skipped_held = 0  # records not opened because held already
        self.openers = Openers(openers_for_this_machine() if openers is None else openers)
        self._opening = threading.BoundedSemaphore(MAX_OPENING)
        self._recovery_began = time.monotonic()
        if self.recovering:
            on_hold("recovering: this gate's database is new; its records are asked of the venue first")

    # --- lifecycle (daemon thread) ---------------------------------------------------------

    def start(self) -> None:
        # clean_session=False: the broker keeps peers' records for us while we are away
        client = make_client(self.settings, self.client_id, clean_session=False)
        client.will_set(self.topics.status, messages.encode_status(self.gate_id, "offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(MAX_INFLIGHT * 2)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._client = client
        host, port = self.brokers[0]
        client.connect_async(host, port, keepalive=self.settings.keepalive)
        client.loop_start()
        log.info("venue sync started broker=%s:%d brokers=%d tls=%s user=%s client_id=%s published=%d", host, port,
                 len(self.brokers), self.settings.tls, self.settings.username, self.client_id, self._published)

    def stop(self, timeout: float = 2.0, save_mark: bool = True) -> None:
        """Say offline (retained) and disconnect cleanly; the Last Will covers a crash. (The
        mark is saved unless the loop, the database's owner, is still busy.)"""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self.connected:
                info = client.publish(self.topics.status, messages.encode_status(self.gate_id, "offline"), qos=1, retain=True)
                info.wait_for_publish(timeout)
        except Exception:
            log.warning("offline status not published", exc_info=True)
        client.disconnect()
        client.loop_stop()
        self.openers.stop()
        if save_mark:
            self._save_mark(force=True)

    # --- paho's network thread: queue and wake, nothing else --------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection broker=%s:%d reason=%s (user name, password file, or the "
                      "broker's password file and ACL)", client.host, client.port, reason)
            return
        self._connect_failures = 0
        client.subscribe([
            (self.topics.ledger_all, 1),
            (self.topics.sync_request_all, 1),
            (self.topics.bundle, 1),  # retained: the newest bundle arrives on every connect
            (self.topics.bundle_delta, 1),  # retained too: deltas are cumulative
            (self.topics.command, 1),
            (self.topics.sync_replies, 1),  # answers to this gate's catch-up requests
            (self.topics.status_all, 1),  # retained: which peers are online (whom to ask)
        ])
        self._queue_event("connected", bool(getattr(flags, "session_present", False)))

    @property
    def broker(self) -> tuple[str, int]:
        """The broker connected to, or being tried."""
        return self.brokers[self._broker]

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        """No connection to the broker (paho calls this inside its ``except OSError``): say why,
        TLS problems by name, and try the next broker of the list."""
        self._connect_failures += 1
        if self._connect_failures <= 3 or self._connect_failures % 30 == 0:
            log.warning("broker not reached broker=%s:%d error=%s failures=%d", client.host, client.port,
                        connect_error(sys.exc_info()[1]), self._connect_failures)
        if len(self.brokers) > 1 and self._client is client:  # (not while stopping)
            self._broker = (self._broker + 1) % len(self.brokers)
            host, port = self.brokers[self._broker]
            client.connect_async(host, port, keepalive=self.settings.keepalive)  # the way paho lets host change
            log.info("trying the next broker broker=%s:%d", host, port)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self._queue_event("disconnected", str(reason))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self.scans_clear is not None:  # a scan is being decided: it has the process to itself
            self.scans_clear.wait(LANE_WAIT)
        topic, payload = message.topic, bytes(message.payload)
        sender = self.topics.sender(topic, "ledger")
        try:
            if sender is not None and sender != self.gate_id:
                # Verified off the decision loop: Ed25519 and JSON cost the lane nothing.
                self._open(open_ledger_message, payload, sender)
            elif (responder := self.topics.responder(topic)) is not None:
                self._open(open_reply, payload, responder)
            else:
                self._queue_event("message", topic, payload, bool(getattr(message, "retain", False)))
        except Exception as exc:  # a bug must not end paho's network thread: refused, counted, logged
            log.exception("bus message not read topic=%s bytes=%d", topic[:200], len(payload))
            self._queue_event("records", Opened(sender or "?", [], [f"error: {exc.__class__.__name__}"]))

    def _open(self, fn: Callable[..., Opened], payload: bytes, sender: str | None) -> None:
        """A peer's message opened: a large one by a worker process (the loop takes its result
        in order, once it is there), a small one here."""
        args = (payload, sender, self.roster, self.venue, self._held_tops)
        future = None
        if len(payload) >= POOL_MIN_BYTES:
            while not self._opening.acquire(timeout=0.5):  # the loop has yet to take in what was opened: the broker keeps the rest
                if self._client is None:
                    return  # stopping
            future = self.openers.submit(fn, *args)
            if future is None:
                self._opening.release()
        if future is None:
            self._queue_event("records", fn(*args))
            return
        self._queue_event("opening", future, fn, args)
        future.add_done_callback(lambda _: self._wake_once())

    def _queue_event(self, *event: Any) -> None:
        """Hand an event to the loop's thread; wake the loop unless a wake-up is pending already."""
        self._events.put(event)
        self._wake_once()

    def _wake_once(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self.wake()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None, properties: Any = None) -> None:
        self._queue_event("acked", mid)

    # --- the decision loop's thread ---------------------------------------------------------

    def pump(self, now: float | None = None) -> float | None:
        """Take in what the bus brought (a bounded amount per turn), publish what the ledger has
        that the bus does not. Returns when the loop should turn again for what waits (None:
        at the next event)."""
        now = time.monotonic() if now is None else now
        if self._roster_changed:  # (before anything is opened with the old one)
            self._roster_changed = False
            self.roster = Roster(self.store.trust.roster())
            log.info("venue roster taken in gates=%d", len(self.roster))
        if now >= self._take_after:
            self._take(now)
        # What comes meanwhile waits for then (no wake-up is posted for it): the loop turns by then.
        due = self._take_after if now < self._take_after else None
        self._check_recovery(now)  # the broker may be the thing that is away
        if not self.connected:
            return due
        self._publish_outbox()
        if now >= self._next_status:
            self._publish_status(now)
        if now >= self._next_catch_up:
            if now - self._answer_arriving < ANSWER_WAIT:  # an answer is still coming in: no second one over it
                self._next_catch_up = self._answer_arriving + ANSWER_WAIT
            elif self._carried or not self._events.empty():  # nor while what came is still being taken in
                self._next_catch_up = now + REQUEST_MIN_INTERVAL
            else:
                self._request_catch_up(now, why="periodic")
        self._send_answers()
        self._save_mark()
        return due

    def _take(self, now: float) -> None:
        self._wake_pending = False  # from here on, a new message wakes the loop again
        merged = self.counters["received"]
        if not self._take_events(now):
            self._wake_pending = True  # more is queued: one more turn after the scans waiting
            self.wake()
        else:
            if self.counters["received"] != merged:  # what comes next waits for a batch (the loop turns by then)
                self._wake_pending = True
                self._take_after = now + MERGE_INTERVAL
            if self._catch_up_when_quiet is not None and now - max(self._catch_up_when_quiet, self._last_peer_records) >= QUIET:
                self._catch_up_when_quiet = None
                self._want_catch_up = True  # (no peer online yet: the first to come online is asked)
                self._request_catch_up(now, why="connected, the broker's queue taken in")

    def _take_events(self, now: float) -> bool:
        """Handle queued events until the merge budget is spent; True when none are left.

        Peers' records are merged together, one transaction per batch; the batch is sized to
        what the budget allows at the rate merges ran so far (a large message is split: what
        is left of it goes first at the next turn)."""
        deadline = time.perf_counter() + MERGE_BUDGET
        limit = max(MERGE_BATCH[0], min(MERGE_BATCH[1], int(MERGE_BUDGET / self._merge_seconds_per_record)))
        batch: list[Opened] = []
        size = 0
        while time.perf_counter() < deadline:
            event = self._next_event()
            if event is None:
                break
            if event[0] == "opening":  # a worker opens it: in order, nothing after it before it
                opened = self._opened(*event[1:])
                if opened is None:
                    self._carried.appendleft(event)
                    break  # its worker's done-callback wakes the loop
                self._opening.release()
                event = ("records", opened)
            if event[0] == "records" and event[1].reply and event[1].sender == self._asked and (
                    event[1].records or event[1].answered):
                self._answer_arriving = now  # the answer asked for is coming in
            if event[0] != "records":
                if batch:  # in order: what came before this event is merged before it
                    self._merge_batch(batch, size, now)
                    batch, size = [], 0
                try:
                    self._handle(event, now)
                except Exception:  # one bad event must not stop the bus, nor the lane
                    log.exception("sync event failed kind=%s", event[0])
                continue
            opened = event[1]
            self._last_peer_records = now
            room = limit - size
            if len(opened.records) > room:  # the rest of this message first at the next batch
                self._carried.appendleft(("records", Opened(opened.sender, opened.records[room:], [], (), opened.answered)))
                opened = Opened(opened.sender, opened.records[:room], opened.refused, opened.unopened)
            batch.append(opened)
            size += len(opened.records)
            if size >= limit:
                self._merge_batch(batch, size, now)
                batch, size = [], 0
        if batch:
            self._merge_batch(batch, size, now)
        if self._carried and self._carried[0][0] == "opening" and not self._carried[0][1].done():
            return True  # nothing to do until the worker is done (it wakes the loop)
        return not self._carried and self._events.empty()

    def _opened(self, future: Future[Opened], fn: Callable[..., Opened], args: tuple[Any, ...]) -> Opened | None:
        """A worker's result (None: not there yet); a failed worker's message opened here."""
        if not future.done():
            return None
        try:
            return future.result()
        except Exception as exc:  # a broken pool (a worker killed): this message in place, the next ones too
            self.openers.failed(exc)
            log.warning("a worker did not open a message error=%r; opened in place", exc)
        try:
            return fn(*args)
        except Exception as exc:  # (opening catches what it knows; a bug costs this message only)
            log.exception("peer message not opened")
            return Opened(str(args[1] or "?"), [], [f"error: {exc.__class__.__name__}"])

    def _next_event(self) -> tuple[Any, ...] | None:
        if self._carried:
            return self._carried.popleft()
        try:
            return self._events.get_nowait()
        except queue.Empty:
            return None

    def _merge_batch(self, batch: list[Opened], size: int, now: float) -> None:
        started = time.perf_counter()
        try:
            self._merge(batch, now)
        except Exception:  # a bug in merging must not stop the bus, nor the lane; the catch-up asks again
            log.exception("peer records not merged messages=%d records=%d", len(batch), size)
        if size >= MERGE_BATCH[0]:
            per_record = (time.perf_counter() - started) / size
            self._merge_seconds_per_record = 0.7 * self._merge_seconds_per_record + 0.3 * per_record

    def publish_scan(self, decision: dict[str, Any]) -> None:
        if self.connected and self._client is not None:
            self._client.publish(self.topics.scans, messages.encode_scan(self.gate_id, decision), qos=0)

    def _handle(self, event: tuple[Any, ...], now: float) -> None:
        kind = event[0]
        if kind == "message":
            self._on_bus_message(event[1], event[2], now, event[3])
        elif kind == "acked":
            self._acknowledged(event[1])
        elif kind == "connected":
            self.connected = True
            self._inflight.clear()
            self._send_from = self._published  # whatever was in flight goes again
            log.info("broker connected broker=%s:%d session_present=%s outbox=%d", *self.broker, event[1],
                     self.outbox_size())
            self._publish_status(now)
            self._want_catch_up = not event[1]  # (asked at once when a peer comes online, unless:)
            if event[1]:  # the broker kept this gate's session: what it queued comes first, then ask for the rest
                self._catch_up_when_quiet = now
                self._next_catch_up = now + self.settings.catch_up_interval
            else:
                self._request_catch_up(now, why="connected")
        elif kind == "disconnected":
            self.online.clear()  # who is online is learnt again from their statuses (a restarted broker kept none)
            if self.connected:
                log.warning("broker connection lost reason=%s outbox=%d", event[1], self.outbox_size())
            self.connected = False

    def _on_bus_message(self, topic: str, payload: bytes, now: float, retained: bool = False) -> None:
        self.counters["received"] += 1
        if self.topics.sender(topic, "ledger") is not None:
            return  # this gate's own records, back from the broker
        peer = self.topics.status_of(topic)
        if peer is not None:
            self._peer_status(peer, payload, now, retained)
            return
        sender = self.topics.sender(topic, "sync/request")
        if sender is not None:
            if sender != self.gate_id:
                self._answer(sender, payload)
            return
        if topic in (self.topics.bundle, self.topics.bundle_delta):
            if self.on_bundle is not None:
                self.on_bundle("bundle" if topic == self.topics.bundle else "delta", payload)
            return
        if topic == self.topics.command:
            self._command(payload)
            return
        self.counters["refused"] += 1
        log.warning("message on an unexpected topic ignored topic=%s bytes=%d", topic[:200], len(payload))

    def _command(self, payload: bytes) -> None:
        if self.on_command is None:
            result: dict[str, Any] = {"nonce": None, "ok": False, "text": "this gate takes no commands", "kind": "unsupported"}
        else:
            result = self.on_command(payload)
        if not result["ok"]:
            self.counters["refused"] += 1
        if self._client is not None:
            self._client.publish(self.topics.command_result, messages.encode_command_result(self.gate_id, **result), qos=1)
        self._next_status = 0.0  # a new mode shows on the status at once

    def _merge(self, batch: list[Opened], now: float) -> None:
        """Peers' messages, already verified, merged in one transaction."""
        records: list[Record] = []
        for opened in batch:
            self.counters["received"] += 1
            records.extend(opened.records)
            for why in opened.refused:
                self._refuse(opened.sender, why)
        if records:
            self._merged(self.ledger.merge(records, time.time()), now)
        unopened = [copy for opened in batch for copy in opened.unopened]
        if unopened:
            self.skipped_held += len(unopened)
            self._check_copies(unopened, batch[0].sender, now)
        for opened in batch:
            if opened.answered is not None and opened.answered.responder in self._active_peers():
                self._answer_done(opened.answered, now)

    def _merged(self, result: MergeResult, now: float) -> None:
        for record, why in result.refused:
            self._refuse(record.origin, f"causality: {why}")
        self.counters["merged"] += len(result.added)
        self._records_held += len(result.added)
        if result.added:  # a new dict, swapped whole: the network thread reads it without a lock
            self._held_tops = {**self._held_tops, **{(r.origin, r.epoch): r.seq for r in result.added}}
        if result.added:
            for listener in self.on_merged:
                listener(result.added)
        self.counters["duplicates"] += result.duplicates
        for held, offered in result.clashes:
            self.counters["clashes"] += 1
            log.error("clashing record kept the first origin=%s seq=%d held_kind=%s offered_kind=%s",
                      held.origin, held.seq, held.kind, offered.kind)
        for conflict in result.conflicts:
            self.counters["conflicts"] += 1
            log.warning(
                "conflict: ticket admitted at two gates cut off from each other ticket=%s origin=%s seq=%d "
                "known=%d found=%d", conflict.ticket_key[:16], conflict.origin, conflict.seq, conflict.known, conflict.found,
            )
        if result.conflicts or result.refused:
            self._next_status = 0.0  # say so on the status topic now
        if result.gaps:  # asked of the gap's own gate when it is online: it surely holds its records
            origin = sorted(result.gaps)[0][0]
            self._request_catch_up(now, why=f"gap in {origin}'s records", prefer=origin)

    def _check_copies(self, unopened: list[Unopened], sender: str, now: float) -> None:
        """Records whose keys this gate holds, left unverified: those whose signature differs
        from the held one are verified here, at most ``MAX_COPIES_CHECKED`` a batch (a flood of
        forgeries must not hold the lane up). A valid one is a clash: its gate signed two
        different records under one key (a cloned SD card); the held one is kept."""
        differing = self.ledger.differing(unopened)
        for origin, epoch, seq, text, signature in differing[:MAX_COPIES_CHECKED]:
            try:
                offered = open_record(text, signature, self.roster, self.venue, None)
            except SignedError as exc:
                self._refuse(sender, f"{exc.kind}: a copy of a held record: {exc}")
                continue
            held = self.ledger.record(origin, epoch, seq)
            if held is not None:
                self._merged(MergeResult([], 0, [(held, offered)], [], [], {}), now)
        for origin, _, seq, _, _ in differing[MAX_COPIES_CHECKED:]:
            self._refuse(sender, f"unchecked: a copy of held record {origin} #{seq} differs (too many in one batch)")

    def _refuse(self, sender: str, why: str) -> None:
        """A peer's record or message not taken in: counted by why, logged (its first words)."""
        kind = why.split(":", 1)[0]
        self.counters["refused"] += 1
        self.refusals[kind] += 1
        if self.refusals[kind] <= 10 or self.refusals[kind] % 1000 == 0:  # a flood must not flood the journal
            log.warning("peer record refused sender=%s why=%r refused_so_far=%d", sender, why[:200], self.refusals[kind])
        self._next_status = 0.0

    # --- catch-up: one named peer answers, to the asker only ---------------------------------

    def _answer(self, asker: str, payload: bytes) -> None:
        """A peer asks for what it lacks. Only the gate it names answers, once per interval per
        asker, on a topic only the asker reads, a few batches per turn of the loop."""
        try:
            request = messages.decode_request(payload)
        except MessageError as exc:
            self._refuse(asker, f"malformed: {exc}")
            return
        if request.to != self.gate_id:
            return
        now = time.monotonic()
        if now - self._answered_at.get(asker, float("-inf")) < ANSWER_MIN_INTERVAL:
            self.counters["requests_dropped"] = self.counters.get("requests_dropped", 0) + 1
            if self.counters["requests_dropped"] <= 10 or self.counters["requests_dropped"] % 1000 == 0:
                log.warning("catch-up request dropped asker=%s why=more than one per %.0f s dropped_so_far=%d",
                            asker, ANSWER_MIN_INTERVAL, self.counters["requests_dropped"])
            return
        self._answered_at[asker] = now
        holds = self.ledger.marks()
        streams = []
        for (origin, epoch), top in sorted(holds.items()):
            theirs = request.marks.get((origin, epoch))
            if theirs is None and not request.all:
                continue
            if (theirs or 0) < top:
                streams.append([origin, epoch, theirs or 0, top])
        self._answers[asker] = streams
        self._answer_holds[asker] = holds
        log.info("catch-up answer for %s streams=%d records=%d", asker, len(streams), sum(s[3] - s[2] for s in streams))

    def _send_answers(self) -> None:
        """Publish batches of the answers under way until ``ANSWER_BUDGET`` is spent (one at
        least): what a scan may wait behind an answer."""
        deadline = time.perf_counter() + ANSWER_BUDGET
        for asker in list(self._answers):
            streams = self._answers[asker]
            while streams:
                if time.perf_counter() >= deadline:
                    self.wake()  # the rest at the next turn, after the scans that came meanwhile
                    return
                origin, epoch, after, top = streams[0]
                rows = [row for row in self.ledger.sealed_records(origin, epoch, after, messages.MAX_BATCH) if row[0] <= top]
                sealed = []
                for seq, text, signature in rows:  # as signed; this gate's own unsealed ones (gate verify) sealed now
                    if text is not None and signature is not None:
                        sealed.append((text, signature))
                    elif origin == self.gate_id and (record := self.ledger.record(origin, epoch, seq)) is not None:
                        sealed.append(self._sealed(record))
                if not rows or rows[-1][0] >= top:
                    streams.pop(0)
                else:
                    streams[0][2] = rows[-1][0]
                if sealed and self._client is not None:
                    self._client.publish(self.topics.sync_reply(asker), messages.encode_reply(self.gate_id, sealed), qos=1)
            if self._client is not None:
                self._client.publish(self.topics.sync_reply(asker), messages.encode_reply(
                    self.gate_id, [], self._answer_holds.pop(asker, {}), recovering=self.recovering), qos=1)
            del self._answers[asker]

    def _request_catch_up(self, now: float, why: str, prefer: str | None = None) -> None:
        if why.startswith("gap") and (now - self._last_request < REQUEST_MIN_INTERVAL
                                      or now - self._answer_arriving < ANSWER_WAIT):
            return  # (an answer coming in fills gaps; asking again would bring it twice)
        responder = prefer if prefer in self.online and prefer in self._active_peers() else self._responder()
        if responder is None:
            log.debug("catch-up not requested why=%s: no peer online", why)
            self._next_catch_up = now + 1.0 if self.recovering else now + self.settings.catch_up_interval
            return
        self._last_request = now
        self._next_catch_up = now + min(ANSWER_WAIT, self.settings.catch_up_interval)  # no answer: ask again, another peer
        self._want_catch_up = False
        marks = self.ledger.marks()  # this gate's own stream too: else the answer sends it back to us
        self._asked = responder
        if self._client is not None:
            request = messages.Request(responder, marks, all=True)
            self._client.publish(self.topics.sync_request, messages.encode_request(request), qos=1)
        log.info("catch-up requested why=%s of=%s streams=%d", why, responder, len(marks))

    def _peer_status(self, peer: str, payload: bytes, now: float, retained: bool = False) -> None:
        if peer == self.gate_id:
            return
        try:
            state = messages.decode_status_state(payload)
        except MessageError:
            return  # a status is only a hint of whom to ask; the records speak for themselves
        if state == "online":
            self.online.add(peer)
            if not retained:  # (a retained one may be old: a peer behind a broken bridge of brokers)
                self._status_at[peer] = now
            if self._want_catch_up:
                self._request_catch_up(now, why=f"{peer} online")
        else:
            self.online.discard(peer)

    def heard(self, now: float | None = None) -> set[str] | None:
        """The peers this gate hears now: online, with a status newer than three status
        intervals (a retained "online" outlives a peer cut off behind a broken bridge of
        brokers); None while this gate is off the bus itself. (Any thread: reads a set copy.)"""
        if not self.connected:
            return None
        now = time.monotonic() if now is None else now
        stale = 3 * self.settings.status_interval
        return {peer for peer in set(self.online) if now - self._status_at.get(peer, float("-inf")) <= stale}

    def _active_peers(self) -> set[str]:
        """The other gates of the roster that are not retired."""
        return {g for g, e in self.roster.gates.items() if g != self.gate_id and not e.retired}

    def _responder(self) -> str | None:
        """The next online peer on the roster, in turn."""
        peers = sorted(self.online & self._active_peers())
        if not peers:
            return None
        later = [g for g in peers if g > self._asked]
        return later[0] if later else peers[0]

    def _answer_done(self, answered: Answered, now: float) -> None:
        """A peer's answer is complete: does this gate now hold all the peer held? (A peer whose
        own database is new vouches for nothing: when every other gate of the roster says so,
        the whole venue is new and there is nothing to recover.)"""
        responder, holds = answered.responder, answered.holds
        self._answer_arriving = float("-inf")  # that answer is complete: the next request may go
        if answered.recovering:
            self._new_peers.add(responder)
            if self.recovering and self._active_peers() <= self._new_peers:
                self._end_recovery("every other gate's database is new too: nothing to recover")
            else:
                self._next_catch_up = now + REQUEST_MIN_INTERVAL  # ask the next peer
            return
        marks = self.ledger.marks()
        missing = {k: v for k, v in holds.items() if marks.get(k, 0) < v and k != (self.gate_id, self.epoch)}
        if not missing:
            self._next_catch_up = now + self.settings.catch_up_interval  # caught up: the next one at the interval
            if self.recovering:
                self._end_recovery(f"caught up from {responder}: {self._records_held} records")
            return
        log.info("catch-up from %s left %d streams short; asking again", responder, len(missing))
        self._next_catch_up = now + REQUEST_MIN_INTERVAL

    # --- recovery of a gate whose database is new ------------------------------------------

    def _check_recovery(self, now: float) -> None:
        if not self.recovering:
            return
        waited = now - self._recovery_began
        if len(self.roster) and not self._active_peers():
            self._end_recovery("no other gate on the venue's roster: nothing to recover")
            return
        if waited >= self.settings.recovery_wait and self.settings.recovery == "admit":
            self._end_recovery(f"not caught up within {self.settings.recovery_wait:.0f} s: admitting ([sync] recovery = admit)")

    def end_recovery(self, why: str = "a signed command") -> str:
        """A technician's override (loop thread): the lane decides again, caught up or not."""
        if not self.recovering:
            return "not recovering"
        self._end_recovery(f"ended by {why}")
        return "recovery ended: the lane decides again"

    @property
    def recovery_note(self) -> str:
        """What the status says while recovering ('' when not)."""
        if not self.recovering:
            return ""
        return f"recovering: {self._records_held} records so far, {time.monotonic() - self._recovery_began:.0f} s"

    def _end_recovery(self, why: str) -> None:
        self.recovering = False
        self.state.set(RECOVERING, 0)
        self.on_hold(None)
        self._next_status = 0.0
        log.warning("recovery over: %s", why)

    def _publish_outbox(self) -> None:
        assert self._client is not None
        while len(self._inflight) < MAX_INFLIGHT:
            batch = self.ledger.records(self.gate_id, self.epoch, self._send_from, messages.MAX_BATCH)
            if not batch:
                return
            sealed = [self._sealed(record) for record in batch]
            info = self._client.publish(self.topics.ledger, messages.encode_records(self.gate_id, sealed), qos=1)
            self._inflight[info.mid] = (batch[0].seq, batch[-1].seq)
            self._send_from = batch[-1].seq
        # More waits for acknowledgements; each one wakes the loop, which comes back here.

    def _sealed(self, record: Record) -> tuple[str, bytes]:
        """A record of this gate's as signed when it was appended (or now, when it was not:
        ``gate verify`` on a gate's database)."""
        if record.signed is not None and record.signature is not None:
            return record.signed, record.signature
        if self.ledger.seal is None:
            raise RuntimeError("this gate's records cannot be published: no gate key ([sync] key_file)")
        return self.ledger.seal(record)

    def roster_changed(self) -> None:
        """A bundle with a new roster was applied (any thread): read it at the next turn."""
        self._roster_changed = True
        self.wake()

    def _acknowledged(self, mid: int) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return  # from before a reconnect, or a status / request
        self._acked_ranges.append(sent)
        self._acked_ranges.sort()
        while self._acked_ranges and self._acked_ranges[0][0] <= self._published + 1:
            self._published = max(self._published, self._acked_ranges.pop(0)[1])

    def _save_mark(self, force: bool = False) -> None:
        if self._published == self._saved_mark:
            return
        now = time.monotonic()
        if force or now - self._mark_saved_at >= MARK_SAVE_INTERVAL:
            self.state.set(PUBLISHED_MARK, self._published)
            self._saved_mark, self._mark_saved_at = self._published, now

    def _publish_status(self, now: float) -> None:
        self._next_status = now + self.settings.status_interval
        if self._client is None:
            return
        fields = {
            **self.status(),
            "recovering": self.recovery_note if self.recovering else None,
            "outbox": self.outbox_size(),
            "conflicts": self.ledger.conflict_count(),
            "sync": {**self.counters, "duplicates_unopened": self.skipped_held, "refusals": dict(self.refusals)},
            "at": round(time.time(), 3),
        }
        self._client.publish(self.topics.status, messages.encode_status(self.gate_id, "online", **fields), qos=1, retain=True)

    def status_soon(self) -> None:
        """Publish the status at the next turn (any thread: one float assignment)."""
        self._next_status = 0.0
        self.wake()

    def outbox_size(self) -> int:
        """This gate's records the broker has not acknowledged yet."""
        return max(0, self.ledger.last_seq() - self._published)


def make_client(settings: SyncConfig, client_id: str, clean_session: bool) -> Any:
    """A paho client with the config's credentials and TLS (the gate, and ``gate bundle
    publish`` / ``gate command`` with the admin's credentials)."""
    import paho.mqtt.client as mqtt  # only a gate with [sync] pays the import

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         protocol=mqtt.MQTTv311)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file or None, certfile=settings.cert_file or None, keyfile=settings.key_file or None)
    client.on_socket_open = _no_delay
    return client


def connect_error(exc: BaseException | None) -> str:
    """Why a connection failed, in a technician's words (TLS problems by name)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message}; check [sync] ca_file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc} (is the broker's port a TLS listener? [sync] port, tls)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listening on that port)"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return repr(exc) if exc is not None else "unknown"


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """Small messages go out at once. With Nagle's algorithm a record published right after a
    decision on ``scans/`` waited for the broker's delayed ACK: 40 ms on Linux (measured)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        log.debug("TCP_NODELAY not set on the broker connection")
