"""Opening peers' ledger messages: parsed, checked against the roster and Ed25519-verified, on
paho's network thread for a small message and in worker processes for a large one.

Why processes: PyNaCl holds the GIL while libsodium verifies (measured: two threads verify no
faster than one), and parsing plus verification is about two thirds of what a peer's record
costs a gate. A catch-up of 100,000 records opened in the gate's own process leaves one core
idle and the merge waiting for the GIL; opened in ``Openers`` the gate's process spends ~2 µs
per record taking the result back (pickle) and the rest of its time merging. A live venue's
messages (one record each) are opened in place: a round trip to a worker costs more than they do.

The functions here are the same for both ways (the workers import this module): pure but for
the Ed25519 call, no state, everything they need passed in.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Any, NamedTuple

from gate.errors import SignedError
from gate.store.ledger import Record
from gate.sync import messages
from gate.sync.messages import MessageError
from gate.trust.records import open_record
from gate.trust.roster import Roster

log = logging.getLogger(__name__)

# The start of a sealed record's text as gate.trust.records writes it: its key. (A text that does
# not start so is simply opened.)
HELD_KEY = re.compile(r'\{"v":2,"venue":"[^"\\]*","origin":"([^"\\]+)","epoch":"([0-9a-z]+)","seq":([0-9]{1,16}),')
POOL_MIN_BYTES = 16 * 1024  # a message this large (~50 records) goes to a worker; a smaller one is opened in place
MAX_OPENERS = 3  # worker processes at most
OPENER_NICENESS = 10  # workers yield the CPU to the lane's own process: a scan never waits for a core


class Answered(NamedTuple):
    """The last message of a catch-up answer: what its sender holds, and whether its own
    database is new (recovering)."""

    responder: str
    holds: dict[tuple[str, str], int]
    recovering: bool


Unopened = tuple[str, str, int, str, bytes]  # a held key's record left unverified: origin, epoch, seq, text, signature


class Opened(NamedTuple):
    """A peer's message opened: the records its origins signed, why any others were refused,
    the records not opened because the ledger holds their keys already (merge checks they are
    what it holds: see ``Ledger.differing``), and (the last message of a catch-up answer) what
    the answer's sender holds."""

    sender: str
    records: list[Record]
    refused: list[str]
    unopened: tuple[Unopened, ...] = ()
    answered: Answered | None = None
    reply: bool = False  # an answer to this gate's catch-up request


def open_ledger_message(payload: bytes, sender: str, roster: Roster, venue: str,
                        held: dict[tuple[str, str], int]) -> Opened:
    """A message on ``sender``'s ledger topic: only ``sender``'s own records."""
    try:
        sealed = messages.decode_records(payload, sender)
    except MessageError as exc:
        return Opened(sender, [], [f"malformed: {exc}"])
    return Opened(sender, *open_sealed(sealed, sender, roster, venue, held))


def open_reply(payload: bytes, sender: str, roster: Roster, venue: str,
               held: dict[tuple[str, str], int]) -> Opened:
    """An answer to this gate's catch-up request from ``sender`` (its topic's last level, which
    only its credentials may write): records of any origin, each opened with its own origin's
    key; the last message of an answer says what its sender holds."""
    try:
        reply = messages.decode_reply(payload)
    except MessageError as exc:
        return Opened(sender, [], [f"malformed: {exc}"], reply=True)
    if reply.responder != sender:
        return Opened(sender, [], [f"malformed: an answer from {reply.responder!r} on {sender!r}'s topic"], reply=True)
    answered = Answered(reply.responder, reply.holds, reply.recovering) if reply.holds is not None else None
    return Opened(reply.responder, *open_sealed(reply.sealed, None, roster, venue, held), answered, reply=True)


def open_sealed(sealed: list[tuple[str, bytes]], sender: str | None, roster: Roster, venue: str,
                held: dict[tuple[str, str], int]) -> tuple[list[Record], list[str], tuple[Unopened, ...]]:
    """Verify each sealed record, but those the ledger holds already (a catch-up answer
    overlapping what the broker kept for this gate, QoS 1 redelivery): a record names its key
    at the start of its text, and a held key is taken in never again, so its signature is not
    worth checking here (Ed25519 is most of the cost). Those are handed back unopened: the
    merge compares their signatures with the held ones (the same text signed by the same key
    has the same signature), and only a differing one is verified, as a clash (a cloned SD
    card) or a forgery."""
    records: list[Record] = []
    refused: list[str] = []
    unopened: list[Unopened] = []
    for text, signature in sealed:
        key = HELD_KEY.match(text)
        if key is not None and int(key[3]) <= held.get((key[1], key[2]), 0):
            unopened.append((key[1], key[2], int(key[3]), text, signature))
            continue
        try:
            records.append(open_record(text, signature, roster, venue, sender))
        except SignedError as exc:
            refused.append(f"{exc.kind}: {exc}")
        except Exception as exc:  # a parser's bug must cost one record, never the message (and its good records)
            log.exception("record not opened")
            refused.append(f"error: {exc.__class__.__name__}")
    return records, refused, tuple(unopened)


def openers_for_this_machine() -> int:
    """Worker processes: as many as the machine has cores, at most ``MAX_OPENERS``; 0 on a
    single core (everything opened in place). They run niced (``OPENER_NICENESS``): the lane's
    own process, which merges and decides, gets a core the moment it wants one."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(MAX_OPENERS, cores)


def _lower_priority() -> None:
    """Give way to the lane's process: this thread (Linux: who 0 is the calling thread) at
    ``OPENER_NICENESS``, and what it starts after it."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), OPENER_NICENESS))
    except OSError:
        pass


class Openers:
    """Worker processes that open large messages (``submit``); started at the first one. A
    pool that cannot start or breaks is given up, logged: messages are then opened in place."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._failed = workers <= 0
        self.jobs = 0  # messages handed to a worker

    def submit(self, fn: Any, *args: Any) -> Future[Opened] | None:
        """``fn(*args)`` in a worker; None when there is no pool (open it in place)."""
        if self._failed:
            return None
        try:
            if self._pool is None:
                self._pool = self._start_niced()
                log.info("record openers started workers=%d", self.workers)
            future = self._pool.submit(fn, *args)
            self.jobs += 1
            return future
        except Exception as exc:  # BrokenProcessPool, OSError (no fork allowed), a shut-down pool
            self._give_up(exc)
            return None

    def _start_niced(self) -> ProcessPoolExecutor:
        """The pool, its workers spawned from a thread that niced itself first (Linux: a
        thread's own nice value, inherited by what it starts), so even their start-up (a Python
        interpreter and its imports, most of a second of CPU) gives way to the lane's process.
        Spawn, not fork: the gate's process has threads (a fork copies the locks they hold)."""
        made: list[ProcessPoolExecutor | BaseException] = []

        def start() -> None:
            try:
                _lower_priority()
                pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_lower_priority)
                for _ in range(self.workers):  # each worker started now, from this thread
                    pool.submit(int)
                made.append(pool)
            except BaseException as exc:  # (handed to the caller: it gives the pool up)
                made.append(exc)

        starter = threading.Thread(target=start, name="openers-start", daemon=True)
        starter.start()
        starter.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    def failed(self, exc: BaseException) -> None:
        """A worker's job failed (the caller opens that message in place): a broken pool (a
        worker killed, say by the OOM killer) is given up."""
        if isinstance(exc, BrokenExecutor):
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if not self._failed:
            log.error("record openers given up, opening peers' messages in place error=%r", exc)
        self._failed = True
        self.stop()

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
