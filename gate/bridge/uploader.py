"""The queue's workers: one thread per destination (pretix may have several), each taking its
due jobs oldest first, delivering them, and writing down what became of each.

A job that fails for a reason that may pass (network, 5xx, auth an admin can fix) gets its own
next attempt time, a growing delay (``backoff``), and the worker pauses as a whole too (an
outage is not hammered); later jobs go on meanwhile, so one job that keeps failing never holds
up the queue behind it, and after ``MAX_TRANSIENT_ATTEMPTS`` it is given up (``dead``). A job
refused for good is ``dead`` at once with the reason, for an operator to read; a job that cannot
be tried yet (its secret not pulled yet) is deferred until the next pull. A job is marked done only
after its destination accepted it, so a bridge killed mid-upload sends it again: pretix takes
one nonce once, OPN's lifecycle refuses a second ``checkedInTicket``, and a webhook carries the
same ``webhook-id`` for receivers to drop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from gate.bridge import opn as opn_api
from gate.bridge.config import BridgeConfig, WebhookConfig
from gate.bridge.pretix import Device, PretixClient, PretixError
from gate.bridge.store import BridgeStore, Job
from gate.bridge.webhooks import Sender, WebhookError, secret_bytes

log = logging.getLogger(__name__)

BACKOFF = (1.0, 60.0)  # seconds: first retry, longest wait
MIN_WAIT = 0.05  # seconds an idle worker waits at least between two looks at the queue
# A job failing for a reason that may pass is given up after this many attempts: at the longest
# pause (60 s) at least ~16 hours of failures, longer than a pretix or OPN outage should last.
MAX_TRANSIENT_ATTEMPTS = 1000
GIVE_UP_UNKNOWN = 24 * 3600.0  # seconds a check-in waits for its secret to show up in pretix's orders


def backoff(attempts: int) -> float:
    return min(BACKOFF[1], BACKOFF[0] * 2 ** min(attempts, 10))


def retry_after(pause: float, attempts: int, was_working: bool) -> float:
    """When a job that failed on its own is due again: after the worker's ``pause`` and a
    delay of its own, so that when the worker resumes, the next job goes first (were it due
    exactly then, the failing job, the oldest, would be taken again and again).

    The own delay grows (``backoff``) only when the destination was working just before
    (``was_working``): then it is this job that fails. During an outage every job fails; a
    growing delay each would keep them waiting long after the destination is back, so they
    wait only one step longer than the pause."""
    return time.time() + pause + (backoff(attempts) if was_working else BACKOFF[0])


class Worker(threading.Thread):
    """Takes ``sink``'s due jobs and hands them to ``deliver`` (which records each outcome)."""

    def __init__(self, store: BridgeStore, sink: str, deliver: Callable[[list[Job]], float], batch: int = 1,
                 part: tuple[int, int] = (0, 1)) -> None:
        super().__init__(name=f"bridge-{sink}-{part[0]}", daemon=True)
        self.store, self.sink, self.deliver, self.batch, self.part = store, sink, deliver, batch, part
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        store.wakeups.append(lambda sink: self.wakeup.set() if sink == self.sink else None)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._once()
                except Exception:  # the store or a bug: log, pause, go on (a dead worker uploads nothing)
                    log.exception("upload worker failed sink=%s part=%s; going on in 5 s", self.sink, self.part)
                    self.stopping.wait(5.0)
        finally:
            self.store.close()

    def _once(self) -> None:
        """Deliver this worker's due jobs, or wait until the next is due or a new one comes."""
        jobs = self.store.due(self.sink, time.time(), self.batch, self.part)
        if not jobs:
            nxt = self.store.next_due(self.sink, self.part)
            wait = 1.0 if nxt is None else min(1.0, max(MIN_WAIT, nxt - time.time()))
            if self.wakeup.wait(wait):
                self.wakeup.clear()
            return
        try:
            pause = self.deliver(jobs)
        except Exception:  # a bug in one delivery must not end the worker
            log.exception("delivery failed sink=%s jobs=%d", self.sink, len(jobs))
            for job in jobs:
                self.store.failed(job.id, "internal error", time.time() + backoff(job.attempts))
            pause = 5.0
        if pause:
            self.stopping.wait(pause)

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()


def pretix_delivery(config: BridgeConfig, store: BridgeStore) -> Callable[[list[Job]], float]:
    """Each job: the admission's secret (pulled), the event's list, ``checkinrpc/redeem``."""
    assert config.pretix is not None
    lists = {e.slug: e for e in config.pretix.events}
    local = threading.local()
    failures = threading.local()

    def client() -> PretixClient | str:
        """This thread's client, made again when the device file changed; or why there is none."""
        path = config.pretix.device_file  # type: ignore[union-attr]
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return "not enrolled with pretix yet (gate bridge enrol)"
        if getattr(local, "client", None) is None or mtime != getattr(local, "mtime", None):
            try:
                local.client = PretixClient(Device.load(path), config.pretix.timeout,  # type: ignore[union-attr]
                                            config.allow_insecure)
            except PretixError as exc:
                return str(exc)
            local.mtime = mtime
        return local.client

    def deliver(jobs: list[Job]) -> float:
        api = client()
        now = time.time()
        if isinstance(api, str):  # kept, not failed: enrolling (again) or a config change makes them go
            for job in jobs:
                store.defer(job.id, api, now + config.poll_interval)
            return 0.0
        for job in jobs:
            row = store.secret(job.body["ticket_key"])
            if row is None and now - job.created_at > GIVE_UP_UNKNOWN:
                store.failed(job.id, "no pretix position has this secret (not one of the configured events, or sold "
                                     "and cancelled between two pulls)", None)
                continue
            if row is None:
                store.defer(job.id, "secret not pulled from pretix yet", now + config.poll_interval)
                continue
            event = lists.get(row["event"])
            if event is None or not event.upload:
                store.skip(job.id, f"event {row['event']} is not uploaded")
                continue
            try:
                result = api.redeem(event.checkin_list, row["secret"], job.body["nonce"], job.body["at"], job.body["direction"])
            except PretixError as exc:
                if not exc.transient:  # this request is refused for good (a 4xx, an answer that is not pretix's)
                    store.failed(job.id, str(exc), None)
                    log.error("pretix refused a check-in for good nonce=%s error=%s", job.body["nonce"], exc)
                    continue
                # This job waits its own growing delay (later jobs go first meanwhile); the worker
                # pauses as a whole too, so that a pretix outage is not hammered.
                was_working = getattr(failures, "count", 0) == 0
                failures.count = getattr(failures, "count", 0) + 1
                pause = backoff(failures.count - 1)
                last = job.attempts + 1 >= MAX_TRANSIENT_ATTEMPTS
                store.failed(job.id, str(exc), None if last else retry_after(pause, job.attempts, was_working))
                log.warning("pretix upload failed, %s nonce=%s attempts=%d error=%s", "given up" if last else "retrying",
                            job.body["nonce"], job.attempts + 1, exc)
                return pause
            failures.count = 0
            if result.ok:
                store.done(job.id, "ok")
                log.debug("pretix check-in stored nonce=%s", job.body["nonce"])
            else:
                store.failed(job.id, result.reason, None)
                log.error("pretix refused a check-in for good nonce=%s reason=%s", job.body["nonce"], result.reason)
        return 0.0

    return deliver


def opn_delivery(config: BridgeConfig, store: BridgeStore) -> Callable[[list[Job]], float]:
    """Batches of actions in one ``POST /stream``; each action's outcome recorded on its own.
    ``ticketId`` = ``<event>-<order code>-<position id>`` of the pretix position (docs/back-office.md)."""
    assert config.opn is not None
    settings = config.opn
    api = opn_api.OpnClient(settings.url, settings.api_key)
    failures = [0]
    # How many actions go in the next request: halved after each failed request, so that one
    # action that makes the whole request fail ends up alone (and then waits, and is given up,
    # on its own) while the others go on; back to batch_size after a request that worked.
    limit = [settings.batch_size]

    def deliver(jobs: list[Job]) -> float:
        now = time.time()
        batch: list[tuple[Job, dict[str, Any]]] = []
        # OPN's lifecycle takes a ticket's actions in order (a scannedTicket after the ticket's
        # checkedInTicket is refused): an action waits while an earlier one of its ticket waits.
        waiting = store.waiting("opn", now)
        for job in jobs:
            if len(batch) >= limit[0]:
                break
            earlier = waiting.get(job.body["ticket_key"])
            if earlier is not None and earlier[0] < job.id:
                store.defer(job.id, "waits for an earlier action of its ticket", earlier[1])
                continue
            own_id = store.opn_ticket(job.body["ticket_key"])  # a GT1 ticket listed by its id
            row = store.secret(job.body["ticket_key"]) if own_id is None else None
            if own_id is not None:
                batch.append((job, opn_api.action(job.body["action"], own_id, job.body["at"])))
            elif row is None and job.body.get("format") == "gt1":
                store.skip(job.id, "GT1 ticket not in [bridge.opn] gt1_tickets")
            elif row is None:
                store.defer(job.id, "ticket not pulled from pretix yet", now + config.poll_interval)
            elif row["event"] not in settings.events:
                store.skip(job.id, f"event {row['event']} is not OPN-backed")
            else:
                ticket_id = f"{row['event']}-{row['order_code']}-{row['positionid']}"
                batch.append((job, opn_api.action(job.body["action"], ticket_id, job.body["at"])))
        if not batch:
            return 0.0
        try:
            outcomes = api.stream([a for _, a in batch])
        except opn_api.OpnError as exc:
            was_working = failures[0] == 0
            failures[0] += 1
            pause = backoff(failures[0] - 1)
            if len(batch) > 1:
                # Nothing known accepted: all due again after the worker's pause, in their order
                # (a scannedTicket before its checkedInTicket), in a smaller request.
                limit[0] = max(1, len(batch) // 2)
                for job, _ in batch:
                    store.failed(job.id, str(exc), time.time() + pause)
                log.warning("OPN stream failed, retrying actions=%d next_batch=%d error=%s", len(batch), limit[0], exc)
            else:
                job = batch[0][0]
                cap = MAX_TRANSIENT_ATTEMPTS if exc.transient else settings.max_attempts
                last = job.attempts + 1 >= cap
                # Refused as this action (not transient): its own growing delay; OPN away: one step.
                store.failed(job.id, str(exc), None if last else retry_after(pause, job.attempts,
                                                                             was_working or not exc.transient))
                log.warning("OPN stream failed for one action, %s action=%s attempts=%d error=%s",
                            "given up" if last else "retrying", batch[0][1]["action"], job.attempts + 1, exc)
            return pause
        failures[0] = 0
        limit[0] = settings.batch_size
        for (job, sent), outcome in zip(batch, outcomes):
            if outcome.accepted:
                store.done(job.id, outcome.promise)
            else:
                last = job.attempts + 1 >= settings.max_attempts
                store.failed(job.id, outcome.error, None if last else time.time() + backoff(job.attempts))
                log.warning("OPN refused an action action=%s attempts=%d error=%s%s", sent["action"], job.attempts + 1,
                            outcome.error, " (given up)" if last else "")
        return 0.0

    return deliver


def webhook_delivery(config: BridgeConfig, store: BridgeStore, hook: WebhookConfig) -> Callable[[list[Job]], float]:
    """One receiver's deliveries (its queue is ``hook.sink``); each message keeps its
    ``webhook-id`` on every retry."""
    sender = Sender(hook.url, secret_bytes(hook.secret))
    failures = [0]

    def deliver(jobs: list[Job]) -> float:
        for job in jobs:
            try:
                sender.deliver(job.body["id"], job.body["payload"].encode())
            except WebhookError as exc:
                was_working = failures[0] == 0
                failures[0] += 1
                pause = backoff(failures[0] - 1)
                last = job.attempts + 1 >= hook.max_attempts
                store.failed(job.id, str(exc), None if last else retry_after(pause, job.attempts, was_working))
                log.warning("webhook not delivered sink=%s attempts=%d error=%s", hook.sink, job.attempts + 1, exc)
                return pause
            failures[0] = 0
            store.done(job.id, "delivered")
        return 0.0

    return deliver
