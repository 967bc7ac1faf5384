"""The decision loop (DESIGN §2): one thread owns every decision and every ledger write.

Readers (scanner, camera, NFC) and inputs (passage sensor, fire alarm, tamper) run in their own
threads and only ``post`` events here. The loop decides, records durably, then moves the relay,
and turns sensor events into ledger facts. It also feeds the systemd watchdog, so a hung loop
(not just a live process) is what systemd restarts.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

from gate.clock import Clock, ClockSync
from gate.decision import Claims, Decision, Reason
from gate.errors import Refused
from gate.lane.engine import DecisionEngine
from gate.lane.turnstile import CONFIRMED, FORCED, FREE_EXIT, Pending, TurnstileController
from gate.store import ledger as records
from gate.store.ledger import Ledger, Record

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
IDLE_WAKE = 0.5  # longest sleep without events: bounds watchdog and timer latency
# Scans waiting for the loop. Readers can produce far more than a lane decides (a scanner
# flooding lines, a camera seeing a code in every frame): beyond this many the oldest waiting is
# dropped, so a flood costs neither memory nor the next real ticket's wait. The line must also
# outlast a stall of the disk: an admission's and a passage's commit wait for fsync, and a
# shared disk (measured on this project's VM: 100-430 ms now and then) or an SD card stalls for
# hundreds of milliseconds. 64 hold 0.64 s of the load harness's 100 scans a second (a real lane
# sees a few a second); a flood's cost is 64 cheap refusals before the real ticket (~15 ms here,
# ~0.1 s on a Pi 4).
MAX_WAITING_SCANS = 64
STALE_SCAN = 2.0  # seconds in line after which a scan is refused busy undecided (its person has moved on)
CLOCK_CHECK_INTERVAL = 1.0  # seconds between asks whether the wall clock is synchronized


@dataclass(frozen=True)
class Scan:
    text: str
    source: str
    direction: str
    received: float  # clock.monotonic() when the reader had the text


@dataclass(frozen=True)
class Tap:
    """A phone's answer to the NFC challenge this gate sent (``nonce``, ``gate_id``)."""

    answer: bytes
    nonce: bytes
    gate_id: str
    source: str
    direction: str
    received: float


@dataclass(frozen=True)
class Passage:
    direction: str


@dataclass(frozen=True)
class FireAlarm:
    active: bool


@dataclass(frozen=True)
class Tamper:
    active: bool


@dataclass(frozen=True)
class SetMode:
    mode: str


@dataclass(frozen=True)
class Notice:
    """Something another thread wants the lane's listeners to hear (a bundle applied)."""

    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Call:
    """Run a function on the loop thread (tests, status snapshots)."""

    fn: Callable[[], Any]
    done: threading.Event
    result: list[Any]


_STOP = object()
WAKE = object()  # nothing to handle: a turn of the loop (the sync client has work for it)
_SCANS = object()  # the next waiting scan's turn (one in the queue at a time, behind any passage)


class DecisionLoop:
    def __init__(
        self,
        engine: DecisionEngine,
        ledger: Ledger,
        turnstile: TurnstileController,
        clock: Clock,
        *,
        watchdog: Callable[[], None] | None = None,
        clock_sync: ClockSync | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.turnstile = turnstile
        self.clock = clock
        self.watchdog = watchdog
        self.clock_sync = clock_sync  # None: the clock is taken as right (gate verify --at, tests)
        self._clock_checked = float("-inf")
        self.listeners: list[Listener] = []
        # Run after every turn (the venue sync's pump); one may return a monotonic time by which
        # it wants another turn (None: whenever the next event comes).
        self.after_turn: list[Callable[[], float | None]] = []
        self.held = ""  # why admissions are held (a new database recovering the venue's records)
        self.counters: Counter[str] = Counter()
        self.crashed: BaseException | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._scans: deque[Scan | Tap] = deque()  # readers' scans, at most MAX_WAITING_SCANS
        self._scans_lock = threading.Lock()
        self._scan_turn_queued = False
        # Set while no scan waits or is being decided. Other threads' bulk work (the venue
        # sync's verification of peers' records) waits on it, so a scan never shares the GIL with
        # it: Python hands the GIL over only every sys.getswitchinterval(), at every release.
        self.scans_clear = threading.Event()
        self.scans_clear.set()
        self.scans_dropped = 0  # by a flood (readers' threads count them, under the lock)
        self._dropped_said = 0
        self._thread: threading.Thread | None = None

    # --- from other threads ----------------------------------------------------------------

    def post(self, event: Any) -> None:
        self._queue.put(event)

    def scan(self, text: str, source: str, direction: str = "in", received: float | None = None) -> None:
        """A reader has ``text`` (since ``received``, monotonic: a camera frame's arrival)."""
        self._line_up(Scan(text, source, direction, self.clock.monotonic() if received is None else received))

    def tap(self, answer: bytes, nonce: bytes, gate_id: str, direction: str = "in", received: float | None = None) -> None:
        self._line_up(Tap(answer, nonce, gate_id, "nfc", direction, self.clock.monotonic() if received is None else received))

    def _line_up(self, scan: Scan | Tap) -> None:
        """Scans wait in a short line of their own: passages, alarms and commands never wait
        behind them, and a flood drops the oldest waiting scan instead of growing."""
        with self._scans_lock:
            if len(self._scans) >= MAX_WAITING_SCANS:
                self._scans.popleft()
                self.scans_dropped += 1
            self._scans.append(scan)
            self.scans_clear.clear()
            if self._scan_turn_queued:
                return
            self._scan_turn_queued = True
        self.post(_SCANS)

    def _next_scan(self) -> Scan | Tap | None:
        """The oldest waiting scan; the next one's turn goes to the back of the queue, behind
        any passage or alarm that came meanwhile."""
        with self._scans_lock:
            scan = self._scans.popleft() if self._scans else None
            more = bool(self._scans)
            self._scan_turn_queued = more
        if more:
            self.post(_SCANS)
        return scan

    # LaneEvents: the GPIO driver calls these from its threads.
    def passage(self, direction: str) -> None:
        self.post(Passage(direction))

    def fire_alarm(self, active: bool) -> None:
        self.post(FireAlarm(active))

    def tamper(self, active: bool) -> None:
        self.post(Tamper(active))

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        done, result = threading.Event(), []
        self.post(Call(fn, done, result))
        if not done.wait(timeout):
            raise TimeoutError("decision loop did not answer")
        ok, value = result[0]
        if not ok:
            raise value
        return value

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="decision-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.post(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.turnstile.start()
            self._check_clock()  # before the first scan
            wanted: float | None = None  # a time by which after-turn work wants a turn
            while True:
                if self.watchdog is not None:
                    self.watchdog()
                deadline = self.turnstile.next_deadline()
                if wanted is not None and (deadline is None or wanted < deadline):
                    deadline = wanted
                wait = IDLE_WAKE if deadline is None else max(0.0, min(IDLE_WAKE, deadline - self.clock.monotonic()))
                try:
                    event = self._queue.get(timeout=wait)
                except queue.Empty:
                    event = None
                if event is _STOP:
                    break
                if event is _SCANS or (event is WAKE and not self.scans_clear.is_set()):
                    # (a turn the bus asked for goes to a waiting scan first: the bus's work runs
                    # after it anyway; passages, alarms and commands still go before scans)
                    event = self._next_scan()
                if event is not None and event is not WAKE:
                    self._handle(event)
                    if isinstance(event, (Scan, Tap)):
                        self._scan_decided()
                wanted = None
                for work in self.after_turn:
                    due = self._after_turn(work)
                    if due is not None and (wanted is None or due < wanted):
                        wanted = due
                self.engine.refresh_trust()  # at most once a second: newly imported documents
                self._check_clock()
                expired = self.turnstile.tick()
                if expired is not None:
                    self._revert(expired, "no passage within timeout")
        except BaseException as exc:  # the lane must fall safe whatever happened
            self.crashed = exc
            log.critical("decision loop crashed, outputs to safe state", exc_info=True)
            raise
        finally:
            self.turnstile.safe()

    def _after_turn(self, work: Callable[[], float | None]) -> float | None:
        try:
            return work()
        except Exception:  # the bus must never stop the lane
            log.exception("work after the turn failed work=%s", getattr(work, "__qualname__", work))
            return None

    def _scan_decided(self) -> None:
        """The scan's turn is over: when none waits, the other threads' bulk work goes on."""
        with self._scans_lock:
            if not self._scans:
                self.scans_clear.set()

    def _check_clock(self) -> None:
        """Keep the engine's clock guard current; say so loudly when synchronization is lost or won."""
        now = self.clock.monotonic()
        if self.clock_sync is None or now - self._clock_checked < CLOCK_CHECK_INTERVAL:
            return
        self._clock_checked = now
        synchronized = self.clock_sync.synchronized()
        if synchronized == self.engine.clock_synchronized:
            return
        self.engine.clock_synchronized = synchronized
        if synchronized:
            log.info("clock synchronized: time-dependent tickets decided again")
        else:
            log.warning("clock NOT synchronized guard=%s: tickets whose decision depends on the time are %s",
                        self.engine.settings.unsynchronized_clock,
                        "refused with clock_unsynced" if self.engine.settings.unsynchronized_clock == "refuse" else "admitted, marked")
        self._emit("clock", self.clock_status())

    def clock_status(self) -> dict[str, Any]:
        return {
            "synchronized": self.engine.clock_synchronized,
            "guard": self.engine.settings.unsynchronized_clock,
            "checked": self.clock_sync is not None,
            "now": round(self.clock.now(), 3),
        }

    def status(self) -> dict[str, Any]:
        """What the lane shows on its status topic (called on the loop thread)."""
        return {
            "mode": self.turnstile.mode,
            "emergency": self.turnstile.emergency,
            "held": self.held or None,
            "clock": self.clock_status(),
            "counters": dict(self.counters),
        }

    def _handle(self, event: Any) -> None:
        if isinstance(event, (Scan, Tap)):
            self._on_scan(event)
        elif isinstance(event, Passage):
            self._on_passage(event.direction)
        elif isinstance(event, FireAlarm):
            self._on_fire_alarm(event.active)
        elif isinstance(event, Tamper):
            self.counters["tamper"] += int(event.active)
            log.warning("tamper input active=%s", event.active)
            self._emit("alarm", {"alarm": "tamper", "active": event.active})
        elif isinstance(event, SetMode):
            self.set_mode(event.mode)
        elif isinstance(event, Notice):
            self._emit(event.kind, event.payload)
        elif isinstance(event, Call):
            try:  # the caller gets the function's exception; the lane goes on
                event.result.append((True, event.fn()))
            except Exception as exc:
                event.result.append((False, exc))
            finally:
                event.done.set()
        else:
            log.error("unknown event dropped type=%s", type(event).__name__)

    def set_mode(self, mode: str) -> None:
        """Normal, free or locked (on this thread); an admission waiting for its passage is
        reverted when the lane leaves normal mode."""
        interrupted = self.turnstile.set_mode(mode)
        if interrupted is not None:
            self._revert(interrupted, f"mode changed to {mode}")
        log.info("mode set mode=%s", mode)
        self._emit("mode", {"mode": mode})

    def hold_admissions(self, reason: str | None) -> None:
        """Refuse every ticket with ``recovering`` and ``reason`` (on this thread), or decide
        again (None). Staff's open_once, free mode and the fire alarm are not held."""
        self.held = reason or ""
        if reason:
            log.warning("admissions held: %s", reason)
        else:
            log.info("admissions no longer held")
        self._emit("hold", {"held": self.held})

    def open_once(self, direction: str, note: str) -> str:
        """Let one person through without a ticket (staff decision). Recorded like an admission
        without a ticket, durable before the relay moves; a missing passage reverts it."""
        if self.turnstile.emergency:
            raise Refused("fire alarm: the lane is already released")
        if self.turnstile.mode == "free":
            return "lane is in free mode: already open"
        if self.turnstile.busy:
            raise Refused("busy: someone is still passing")
        if direction not in self.turnstile.settings.directions:
            raise Refused(f"no unlock relay for direction {direction!r}")
        record = self._append(records.ADMISSION, direction=direction, details={"by": "command", "note": note})
        if record is None:
            raise Refused("could not record the admission")
        self.turnstile.open_for(direction, record)
        self.counters["opened_by_command"] += 1
        log.info("opened once by command direction=%s seq=%d", direction, record.seq)
        return f"opened once ({direction})"

    def _on_scan(self, scan: Scan | Tap) -> None:
        claims: Claims | None = None
        self._emit("scan", {"source": scan.source})  # the lane's screen shows "checking"
        if self.scans_dropped != self._dropped_said:
            self._say_dropped()
        waited = self.clock.monotonic() - scan.received
        if waited > STALE_SCAN:
            decision = Decision.deny(Reason.BUSY, f"waited {waited:.1f} s in line: not decided", direction=scan.direction)
        elif self.turnstile.emergency:
            decision = Decision.deny(Reason.EMERGENCY, "fire alarm: scans refused", direction=scan.direction)
        elif self.turnstile.mode == "locked":
            decision = Decision.deny(Reason.GATE_CLOSED, "lane is locked", direction=scan.direction)
        elif self.turnstile.busy:
            decision = Decision.deny(Reason.BUSY, "waiting for the previous person to pass", direction=scan.direction)
        elif self.held and self.turnstile.mode != "free":
            decision = Decision.deny(Reason.RECOVERING, self.held, direction=scan.direction)
        elif isinstance(scan, Tap):
            decision, claims = self.engine.decide_tap(scan.answer, scan.nonce, scan.gate_id, scan.direction, self.clock.now())
        else:
            decision, claims = self.engine.decide(scan.text, scan.direction, self.clock.now())
        if decision.accepted and claims is not None:
            decision = self._admit(decision, claims)
        if not decision.accepted:
            self.turnstile.show_denied()
        latency_ms = (self.clock.monotonic() - scan.received) * 1000
        self.counters["accepted" if decision.accepted else f"denied.{decision.reason}"] += 1
        log.info(
            "decision accepted=%s reason=%s format=%s direction=%s source=%s ticket=%s latency_ms=%.2f",
            decision.accepted,
            decision.reason,
            decision.format,
            decision.direction,
            scan.source,
            (decision.ticket_key or "-")[:16],
            latency_ms,
        )
        self._emit("decision", {**decision.as_dict(), "source": scan.source, "latency_ms": round(latency_ms, 3)})

    def _say_dropped(self) -> None:
        dropped, self._dropped_said = self.scans_dropped - self._dropped_said, self.scans_dropped
        self.counters["scans_dropped"] += dropped
        log.warning("scans dropped: more than %d waiting (a reader flooding?) dropped=%d dropped_so_far=%d",
                    MAX_WAITING_SCANS, dropped, self.scans_dropped)

    def _admit(self, decision: Decision, claims: Claims) -> Decision:
        if self.turnstile.mode == "free":
            return decision.with_details(mode="free")  # nothing recorded: the lane is open anyway
        try:
            record = self.ledger.append(
                records.ADMISSION,
                self.clock.now(),
                ticket_key=claims.ticket_key,
                format=claims.format,
                direction=decision.direction,
                details=_admission_details(claims, decision),
                proof_key=claims.proof.key if claims.proof else None,
            )
        except Exception:
            log.exception("ledger write failed, scan denied reason=error")
            return Decision.deny(Reason.ERROR, "could not record the admission", claims=claims, direction=decision.direction)
        self.turnstile.open_for(decision.direction, record)  # only after the record is durable
        self._emit("record", _record_dict(record))
        return decision

    def peer_records(self, added: list[Record]) -> None:
        """Other gates' records just merged (venue sync, on this thread): shown to listeners,
        one event a merge (a busy venue merges hundreds a second)."""
        self._emit("peer_records", {"records": [_record_dict(record) for record in added]})

    def _append(self, kind: str, **fields: Any) -> Record | None:
        try:
            record = self.ledger.append(kind, self.clock.now(), **fields)
        except Exception:
            log.exception("ledger write failed kind=%s", kind)
            return None
        self._emit("record", _record_dict(record))
        return record

    def _revert(self, pending: Pending, why: str) -> None:
        admission: Record = pending.admission
        self.counters["reverted"] += 1
        log.info("admission reverted seq=%d why=%r ticket=%s", admission.seq, why, (admission.ticket_key or "-")[:16])
        self._append(
            records.REVERT,
            ticket_key=admission.ticket_key,
            format=admission.format,
            direction=admission.direction,
            ref=admission.key,
            details={"why": why},
        )

    def _on_passage(self, direction: str) -> None:
        outcome, record = self.turnstile.passage(direction)
        if outcome == CONFIRMED:
            self.counters["passages"] += 1
            self._append(
                records.PASSAGE,
                ticket_key=record.ticket_key,
                format=record.format,
                direction=direction,
                ref=record.key,
            )
        elif outcome == FORCED:
            self.counters["forced_passages"] += 1
            log.warning("forced passage direction=%s", direction)
            self._append(records.FORCED, direction=direction)
            self._emit("alarm", {"alarm": "forced_passage", "direction": direction})
        elif outcome == FREE_EXIT:
            self.counters["free_exits"] += 1
            self._append(records.FREE_EXIT, direction=direction)
        else:
            log.info("passage not recorded direction=%s emergency=%s mode=%s", direction, self.turnstile.emergency, self.turnstile.mode)

    def _on_fire_alarm(self, active: bool) -> None:
        was = self.turnstile.emergency
        interrupted = self.turnstile.set_emergency(active)
        if interrupted is not None:
            self._revert(interrupted, "fire alarm")
        if was != active:
            log.warning("fire alarm active=%s", active)
            self.counters["fire_alarms"] += int(active)
            self._emit("alarm", {"alarm": "fire", "active": active})

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, payload)
            except Exception:
                log.exception("listener failed kind=%s", kind)


def _admission_details(claims: Claims, decision: Decision) -> dict[str, Any]:
    """What this gate knew when it admitted: peers use ``known`` and ``limit`` to tell a
    conflict (two gates cut off from each other admitting one ticket) from a re-entry."""
    details: dict[str, Any] = {}
    if claims.proof:
        details["proof"] = claims.proof.kind
    if decision.entries is not None:
        details["known"], details["limit"] = decision.entries
    return details


def _record_dict(record: Record) -> dict[str, Any]:
    return {
        "origin": record.origin,
        "epoch": record.epoch,
        "seq": record.seq,
        "kind": record.kind,
        "at": record.at,
        "ticket_key": record.ticket_key,
        "format": record.format,
        "direction": record.direction,
        "ref": list(record.ref) if record.ref else None,
    }
