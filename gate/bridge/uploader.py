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
from gate.bridge import refusals
from gate.bridge.config import BridgeConfig, WebhookConfig
from gate.bridge.health import Contact
from gate.bridge.pretix import Device, PretixClient, PretixError, Redeemed
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
    """Takes ``sink``'s due jobs and hands them to ``deliver`` (which records each outcome).
    ``also``: sinks it serves too, one batch of one sink at a time, each only while the sinks
    before it have nothing due (pretix's failed check-ins wait while check-ins are due, and
    share their connection). A pause asked after a batch of ``sink`` holds the whole worker
    (an outage is not hammered); one asked after a batch of an ``also`` sink holds only that
    sink: a failed check-in that fails never keeps a check-in waiting (the next check-in tries
    the destination, and pauses everything if it is really away)."""

    def __init__(self, store: BridgeStore, sink: str, deliver: Callable[[list[Job]], float], batch: int = 1,
                 part: tuple[int, int] = (0, 1), also: tuple[str, ...] = ()) -> None:
        super().__init__(name=f"bridge-{sink}-{part[0]}", daemon=True)
        self.store, self.sink, self.deliver, self.batch, self.part = store, sink, deliver, batch, part
        self.sinks = (sink, *also)
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.held: dict[str, float] = {}  # an ``also`` sink → until when it is not taken (its pause)
        store.wakeups.append(lambda sink: self.wakeup.set() if sink in self.sinks else None)

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
        now = time.time()
        sinks = [sink for sink in self.sinks if self.held.get(sink, 0.0) <= now]
        taken = next(((sink, due) for sink in sinks if (due := self.store.due(sink, now, self.batch, self.part))), None)
        if taken is None:
            nexts = [n for sink in sinks if (n := self.store.next_due(sink, self.part)) is not None]
            nexts += [until for until in self.held.values() if until > now]
            wait = 1.0 if not nexts else min(1.0, max(MIN_WAIT, min(nexts) - time.time()))
            if self.wakeup.wait(wait):
                self.wakeup.clear()
            return
        sink, jobs = taken
        try:
            pause = self.deliver(jobs)
        except Exception:  # a bug in one delivery must not end the worker
            log.exception("delivery failed sink=%s jobs=%d", self.sink, len(jobs))
            for job in jobs:
                self.store.failed(job.id, "internal error", time.time() + backoff(job.attempts))
            pause = 5.0
        if pause and sink != self.sink:
            self.held[sink] = time.time() + pause
        elif pause:
            self.stopping.wait(pause)

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()


def pretix_delivery(config: BridgeConfig, store: BridgeStore, contact: Contact | None = None) -> Callable[[list[Job]], float]:
    """Each job: a check-in (sink ``pretix``: the admission's secret, pulled, to
    ``checkinrpc/redeem``) or a refusal (sink ``pretix-failed``: to the list's
    ``failed_checkins``). ``contact`` is told whether pretix answered."""
    assert config.pretix is not None
    lists = {e.slug: e for e in config.pretix.events}
    codes = refusals.PretixCodes(store, list(lists))
    contact = contact or Contact("pretix")
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

    def redeem(api: PretixClient, job: Job, now: float) -> Callable[[], Redeemed] | None:
        """The upload of a check-in, or None when it is not sent now (deferred, skipped, dead)."""
        row = store.secret(job.body["ticket_key"])
        if row is None and now - job.created_at > GIVE_UP_UNKNOWN:
            store.failed(job.id, "no pretix position has this secret (not one of the configured events, or sold "
                                 "and cancelled between two pulls)", None)
            return None
        if row is None:
            store.defer(job.id, "secret not pulled from pretix yet", now + config.poll_interval)
            return None
        event = lists.get(row["event"])
        if event is None or not event.upload:
            store.skip(job.id, f"event {row['event']} is not uploaded")
            return None
        return lambda: api.redeem(event.checkin_list, row["secret"], job.body["nonce"], job.body["at"],
                                  job.body["direction"])

    def refusal(api: PretixClient, job: Job, now: float) -> Callable[[], Redeemed] | None:
        """The upload of a refusal as a failed check-in (gate.bridge.refusals), or None."""
        found = codes.find(job.body["ticket_key"])
        if found is None and now - job.created_at < 2 * config.poll_interval + 5:
            store.defer(job.id, "code not pulled from pretix yet", now + config.poll_interval)
            return None
        if found is None:
            store.skip(job.id, "not a code pretix issued for a configured event")
            return None
        slug, secret, position = found
        event = lists[slug]
        if not event.upload:
            store.skip(job.id, f"event {slug} is not uploaded")
            return None
        body = refusals.failed_checkin(job.body, secret, position)
        return lambda: api.failed_checkin(slug, event.checkin_list, body)

    def deliver(jobs: list[Job]) -> float:
        api = client()
        now = time.time()
        if isinstance(api, str):  # kept, not failed: enrolling (again) or a config change makes them go
            for job in jobs:
                store.defer(job.id, api, now + config.poll_interval)
            return 0.0
        for job in jobs:
            request = (refusal if job.sink == refusals.SINK else redeem)(api, job, now)
            if request is None:
                continue
            what = f"{'refusal' if job.sink == refusals.SINK else 'check-in'} nonce={job.body['nonce']}"
            try:
                result = request()
            except PretixError as exc:
                contact.failed(exc.status, str(exc))
                if not exc.transient:  # this request is refused for good (a 4xx, an answer that is not pretix's)
                    store.failed(job.id, str(exc), None)
                    log.error("pretix refused a %s for good error=%s", what, exc)
                    continue
                # This job waits its own growing delay (later jobs go first meanwhile); the worker
                # pauses as a whole too, so that a pretix outage is not hammered.
                was_working = getattr(failures, "count", 0) == 0
                failures.count = getattr(failures, "count", 0) + 1
                pause = backoff(failures.count - 1)
                last = job.attempts + 1 >= MAX_TRANSIENT_ATTEMPTS
                store.failed(job.id, str(exc), None if last else retry_after(pause, job.attempts, was_working))
                log.warning("pretix upload failed, %s %s attempts=%d error=%s", "given up" if last else "retrying",
                            what, job.attempts + 1, exc)
                return pause
            contact.answered()
            failures.count = 0
            if result.ok:
                store.done(job.id, "ok")
                log.debug("pretix stored a %s", what)
            else:
                store.failed(job.id, result.reason, None)
                log.error("pretix refused a %s for good reason=%s", what, result.reason)
        return 0.0

    return deliver


def opn_delivery(config: BridgeConfig, store: BridgeStore, contact: Contact | None = None) -> Callable[[list[Job]], float]:
    """Batches of actions in one ``POST /stream``; each action's outcome recorded on its own.
    ``ticketId`` = ``<event>-<order code>-<position id>`` of the pretix position (docs/back-office.md).
    ``contact`` is told whether OPN answered."""
    assert config.opn is not None
    contact = contact or Contact("opn")
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
            contact.failed(exc.status, str(exc))
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
        contact.answered()
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
