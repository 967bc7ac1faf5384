"""``gate bridge run``: the wiring and the lifecycle. Parts, in the order started:

1. the store (``bridge.db``), the roster (read from the roster file and checked the way a lane
   reads it from a bundle: the bridge signs a bundle with it and reads that back);
2. the upload workers (pretix, OPN, each webhook), which start on what the queue already holds;
3. the bus listener (records in; bundles and deltas out);
4. the puller: every ``poll_interval``, pretix's keys, check-in list, revoked and blocked secrets
   and orders, turned into a bundle or a delta when anything a lane decides on changed;
5. the status: ``<state_dir>/status.json`` every second (``gate bridge status`` reads it), the
   retained ``bridge/status`` on the bus every ``status_interval`` (with a Last Will), and the
   metrics endpoint when ``[bridge] metrics`` asks for one; all three from one snapshot.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from gate.bridge import builder, refusals
from gate.bridge.builder import EventPull, Publisher, is_signed_secret, secret_key
from gate.bridge.config import BridgeConfig
from gate.bridge.health import Contact
from gate.bridge.intake import FULL, RefusalIntake
from gate.bridge.listener import BusListener
from gate.bridge.opn import CHECKED_IN, SCANNED, OpnClient
from gate.bridge.pretix import (
    Device,
    PretixClient,
    PretixError,
    cursor,
    parse_time,
    positions,
)
from gate.bridge.store import LAG_WINDOW, BridgeStore, NewJob, admission_id
from gate.bridge.uploader import Worker, opn_delivery, pretix_delivery, webhook_delivery
from gate.bridge.webhooks import payload as webhook_payload
from gate.errors import ConfigError
from gate.sync.messages import Topics, encode_status
from gate.trust import signed
from gate.trust.roster import Roster

log = logging.getLogger(__name__)

PRETIX_FORMATS = ("pretix_sig1", "pretix_random")
OPN_PROBE = 60.0  # seconds without an answer from OPN before the bridge asks whether it is there


def read_roster(config: BridgeConfig) -> list[dict[str, Any]]:
    """The roster file (``{"gates": [...]}`` as ``gate bundle make --roster`` takes it) as a
    bundle's entries; checked by signing a bundle with it and reading that back as a lane does."""
    try:
        doc = json.loads(config.roster_file.read_text())
        gates = doc["gates"] if isinstance(doc, dict) else None
        if not isinstance(gates, list):
            raise ValueError("needs {\"gates\": [...]}")
        entries = [signed.roster_entry(g["gate"], base64.b64decode(g["public_key"], validate=True),
                                       zone=g.get("zone"), directions=tuple(g.get("directions", ["in", "out"])),
                                       retired=bool(g.get("retired", False)), retired_at=g.get("retired_at"))
                   for g in gates]
        probe = signed.sign(signed.bundle_payload(config.venue, 1, time.time(), [], b"", entries), config.admin_key)
        signed.read(probe, bytes(config.admin_key.verify_key), config.venue)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(config.path, [f"bridge.roster: {config.roster_file}: {exc}"]) from None
    return entries


def read_gt1_tickets(config: BridgeConfig) -> list[tuple[str, str]]:
    """``[bridge.opn] gt1_tickets``: GT1 ticket ids (the ``cti``, hex), one a line (``#``
    comments); each ticket's OPN ``ticketId`` is its id in lower-case hex."""
    from gate import formats

    gt1 = formats.load("gt1")
    path = config.opn.gt1_tickets  # type: ignore[union-attr]
    rows, bad = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):  # type: ignore[union-attr]
        ident = line.split("#", 1)[0].strip().lower()
        if not ident:
            continue
        key = gt1.ticket_key_of_id(ident)
        if key is None:
            bad.append(f"line {n}")
        else:
            rows.append((key, ident))
    if bad:
        raise ConfigError(config.path, [f"bridge.opn.gt1_tickets: {path}: not a GT1 ticket id (hex) at {', '.join(bad[:10])}"])
    return rows


def roster_of(config: BridgeConfig, entries: list[dict[str, Any]]) -> Roster:
    data = signed.sign(signed.bundle_payload(config.venue, 1, time.time(), [], b"", entries), config.admin_key)
    bundle = signed.read(data, bytes(config.admin_key.verify_key), config.venue)
    return Roster(bundle.roster)  # type: ignore[union-attr]


class Bridge:
    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.store = BridgeStore(config.database)
        self.roster_entries = read_roster(config)
        if config.opn is not None and config.opn.gt1_tickets is not None:
            self.store.put_opn_tickets(read_gt1_tickets(config))
        self.documents = [json.loads(p.read_text()) for p in config.document_files]
        self.publisher = Publisher(self.store, config.admin_key, config.venue, self.roster_entries, self.documents)
        self.failed_checkins = config.pretix is not None and config.pretix.failed_checkins
        pretix = config.pretix
        self.intake = (RefusalIntake(pretix.failed_checkins_rate, pretix.failed_checkins_burst,
                                     pretix.failed_checkins_max_pending) if pretix is not None else RefusalIntake())
        self.listener = BusListener(config.broker, config.venue, roster_of(config, self.roster_entries),
                                    self._take, self.store.marks, self._refused if self.failed_checkins else None,
                                    self.bus_status)
        self.topics = Topics(config.broker.topic_root, config.broker.username)
        self.workers: list[Worker] = []
        self.stopping = threading.Event()
        self.pull_now = threading.Event()
        # What each service last answered (the pulls, the uploads, the OPN probe tell it).
        self.contacts = {name: Contact(name) for name, on in (("pretix", config.pretix), ("opn", config.opn)) if on}
        self.metrics: Any = None
        self._snapshot: dict[str, Any] | None = None  # the last status made (the status loop's)
        self.pull_status: dict[str, Any] = {"enrolled": False, "last_pull": {}, "pulls": {}, "last_error": None,
                                            "unhonoured": {}, "skipped_positions": {}}
        self._status_lock = threading.Lock()  # pull_status: the puller writes it, the status loop reads it
        self._threads: list[threading.Thread] = []
        self._take_lock = threading.Lock()

    # --- what each admission becomes --------------------------------------------------------

    def _take(self, records: list[Any]) -> tuple[int, int]:
        with self._take_lock:
            return self.store.take_records(records, self.plan)

    def plan(self, admission: Any, passage: Any) -> list[NewJob]:
        """The jobs of a new admission (``passage`` None) or of a confirmed one."""
        jobs: list[NewJob] = []
        fmt, key, aid = admission["format"], admission["ticket_key"], admission_id(admission)
        is_pretix = fmt in PRETIX_FORMATS and key is not None
        opn = self.config.opn
        to_opn = opn is not None and key is not None and admission["direction"] == "in" and (
            is_pretix or (fmt == "gt1" and opn.gt1_tickets is not None))
        if passage is None:
            if to_opn and opn.mode == "multi_gate":  # type: ignore[union-attr]
                jobs.append(NewJob("opn", f"opn:scanned:{aid}", {"action": SCANNED, "ticket_key": key, "format": fmt,
                                                                 "at": admission["at"]}, admission["at"]))
            return jobs
        if self.config.pretix is not None and is_pretix:
            jobs.append(NewJob("pretix", f"pretix:{aid}", {"ticket_key": key, "nonce": aid, "at": admission["at"],
                                                           "direction": admission["direction"]}, passage["at"]))
        if to_opn:
            jobs.append(NewJob("opn", f"opn:checkedin:{key}", {"action": CHECKED_IN, "ticket_key": key, "format": fmt,
                                                               "at": passage["at"]}, passage["at"]))
        for hook in self.config.webhooks:  # keyed by the receiver's stable sink, not its place in the list
            body = webhook_payload("gate.passage", passage["at"], {
                "admission": aid, "gate": admission["origin"], "direction": admission["direction"],
                "format": fmt, "ticket_key": key, "admitted_at": admission["at"], "passed_at": passage["at"]})
            jobs.append(NewJob(hook.sink, f"{hook.sink}:{aid}", {"id": f"msg_{aid}", "payload": body.decode()},
                               passage["at"]))
        return jobs

    def _refused(self, gate: str, payload: bytes) -> None:
        """A lane's decision on ``scans/<gate>`` (paho's thread): a refusal of a pretix ticket
        becomes a failed check-in job (gate.bridge.refusals) within the lane's rate and the
        queue's cap (gate.bridge.intake: beyond them it is counted, not queued); anything else
        is dropped."""
        try:
            refusal = refusals.read_refusal(payload, gate)
        except ValueError as exc:  # ScanError, or a field of the wrong type
            self.listener.counters["scans_refused"] += 1
            log.debug("scan message not read gate=%s error=%s", gate, exc)
            return
        if refusal is None or not self.intake.allow(gate):
            return
        now = time.time()
        key, body = refusals.job_body(refusal, now)
        if self.store.add_jobs([NewJob(refusals.SINK, key, body, now)], now, cap=self.intake.max_pending) is None:
            self.intake.dropped(gate, FULL)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        c = self.config
        if c.pretix is not None:
            also = (refusals.SINK,) if self.failed_checkins else ()
            deliver = pretix_delivery(c, self.store, self.contacts["pretix"])
            for i in range(c.pretix.workers):
                self.workers.append(Worker(self.store, "pretix", deliver, 1, (i, c.pretix.workers), also))
        if c.opn is not None:
            self.workers.append(Worker(self.store, "opn", opn_delivery(c, self.store, self.contacts["opn"]), c.opn.batch_size))
        for hook in c.webhooks:
            self.workers.append(Worker(self.store, hook.sink, webhook_delivery(c, self.store, hook)))
        for worker in self.workers:
            worker.start()
        self._snapshot = self.status()
        if c.metrics is not None:
            from gate.bridge.metrics import serve

            try:
                self.metrics = serve(c.metrics, self.snapshot)
            except OSError as exc:  # the bridge runs without its metrics rather than not at all
                log.error("metrics endpoint not started listen=%s:%d error=%r", *c.metrics, exc.strerror or str(exc))
        self.listener.start()
        for target, name in ((self._pull_loop, "bridge-pull"), (self._status_loop, "bridge-status")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        for warning in c.broker.warnings():
            log.warning("%s", warning.replace("sync: ", "bridge.broker: ", 1))
        log.info("bridge started venue=%s pretix_events=%d opn=%s webhooks=%d", c.venue,
                 len(c.pretix.events) if c.pretix else 0, c.opn is not None, len(c.webhooks))

    def stop(self) -> None:
        self.stopping.set()
        self.pull_now.set()
        self.listener.stop()
        for worker in self.workers:
            worker.stop()
        for thread in [*self.workers, *self._threads]:
            thread.join(5)
        if self.metrics is not None:
            self.metrics.close()
        self.write_status()
        log.info("bridge stopped")

    # --- pulling from pretix --------------------------------------------------------------

    def _pull_loop(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.pull_once()
            except Exception:
                log.exception("pull failed")
            try:
                self.probe_opn()
            except Exception:
                log.exception("OPN probe failed")
            wait = max(0.0, self.config.poll_interval - (time.monotonic() - started))
            self.pull_now.wait(wait)
            self.pull_now.clear()
        self.store.close()

    def pull_once(self) -> bool:
        """One pull of every event, then publish what changed. False when pretix was not asked
        (not enrolled) or some part of the pull failed.

        Each event, and each kind of each event (keys, check-in list, revoked, blocked, orders),
        is pulled on its own: one that fails keeps what was pulled of it before, and the others,
        revocations above all, are still published."""
        c = self.config
        if c.pretix is None:
            return False
        try:
            device = Device.load(c.pretix.device_file)
        except PretixError:
            self._set_status(enrolled=False, last_error="not enrolled (gate bridge enrol)")
            return False
        self._set_status(enrolled=True)
        try:
            api = PretixClient(device, c.pretix.timeout, c.allow_insecure)
        except PretixError as exc:
            self._set_status(last_error=str(exc))
            log.error("pretix not pulled: %s", exc)
            return False
        events: list[EventPull] = []
        errors: list[str] = []
        new_secrets = 0
        try:
            for ev in c.pretix.events:
                try:
                    pulled, added = self._pull_event(api, ev.slug, ev.checkin_list, errors)
                except Exception as exc:  # a bug on one event's answers must not hold up the others
                    log.exception("pretix pull of an event failed event=%s", ev.slug)
                    errors.append(f"{ev.slug}: {exc.__class__.__name__}")
                    continue
                if pulled is not None:
                    events.append(pulled)
                new_secrets += added
        finally:
            api.close()
        self._set_status(last_error="; ".join(errors)[:1000] if errors else None)
        if events:
            # An event whose keys or list were never pulled is not here: no bundle had it, so
            # leaving it out loses nothing, and the other events get their revocations now.
            self._publish(events)
        if new_secrets:
            for sink in ("pretix", "opn"):
                self.store.retry_now(sink)
        return not errors

    def _publish(self, events: list[EventPull]) -> None:
        for publication in self.publisher.plan(events):
            topic = self.topics.bundle if publication.kind == "bundle" else self.topics.bundle_delta
            if not self.listener.publish(topic, publication.data, retain=True):
                # Not published: forget it, so that the next pull makes it again.
                self.store.put(**{publication.kind: None} if publication.kind == "bundle" else {"delta": {"version": publication.version}})
                log.warning("%s not published (broker away); again at the next pull", publication.kind)
                break
            log.info("%s published version=%d revocations=%d bytes=%d", publication.kind, publication.version,
                     publication.revoked, len(publication.data))

    def _pull_event(self, api: PretixClient, slug: str, list_id: int, errors: list[str]) -> tuple[EventPull | None, int]:
        """One event, kind by kind. A kind that fails is named in ``errors`` and the event goes
        on with what was pulled of that kind before (kept in the store). None when the event's
        keys or check-in list were never pulled: there is no document to make of it yet."""
        def failed(kind: str, exc: Exception) -> None:
            errors.append(f"{slug}/{kind}: {exc}")
            log.warning("pretix pull failed event=%s kind=%s error=%s", slug, kind, exc)
            self._pulled(f"{slug}/{kind}", str(exc))
            if isinstance(exc, PretixError):
                self.contacts["pretix"].failed(exc.status, str(exc))

        store = self.store
        try:
            keys: list[str] | None = builder.valid_keys(api.event(slug))
            store.put(**{f"pretix:{slug}:keys": keys})
            self._pulled(f"{slug}/event")
        except (PretixError, ValueError) as exc:
            failed("event", exc)
            keys = store.get(f"pretix:{slug}:keys")

        checkin: dict[str, Any] | None
        unhonoured: list[str]
        try:
            checkin, unhonoured = builder.checkin_list(api.checkin_list(slug, list_id))
            store.put(**{f"pretix:{slug}:checkin": {"list": checkin, "unhonoured": unhonoured}})
            with self._status_lock:
                changed = unhonoured != self.pull_status["unhonoured"].get(slug)
                self.pull_status["unhonoured"][slug] = unhonoured
            if changed:
                for why in unhonoured:
                    log.warning("pretix check-in list setting not honoured offline event=%s list=%d: %s", slug, list_id, why)
            self._pulled(f"{slug}/checkin_list")
        except (PretixError, ValueError) as exc:
            failed("checkin_list", exc)
            kept = store.get(f"pretix:{slug}:checkin") or {}
            checkin, unhonoured = kept.get("list"), list(kept.get("unhonoured", []))

        revoked: dict[str, str] = store.get(f"pretix:{slug}:revoked", {})
        blocked: dict[str, bool] = store.get(f"pretix:{slug}:blocked", {})
        for kind, items, since_name, time_field in (("revoked", revoked, "created_since", "created"),
                                                    ("blocked", blocked, "updated_since", "updated")):
            try:
                self._pull_secrets(api, slug, kind, items, since_name, time_field)
            except (PretixError, ValueError) as exc:
                failed(kind, exc)

        added = 0
        try:
            osince = cursor(store.get(f"pretix:{slug}:orders_since"))
            orders, generated = api.pages(f"events/{slug}/orders/", {"modified_since": osince} if osince else {}, "orders")
            found, skipped = positions(orders)
            if skipped:
                log.warning("pretix positions not read (malformed), skipped event=%s skipped=%d", slug, skipped)
                with self._status_lock:
                    counts = self.pull_status["skipped_positions"]
                    counts[slug] = counts.get(slug, 0) + skipped
            rows = [{"ticket_key": secret_key(p["secret"]), "event": slug, "secret": p["secret"], "order": p["order"],
                     "positionid": p["positionid"], "id": p["id"], "status": "c" if p["canceled"] else p["status"],
                     "item": p["item"], "variation": p["variation"], "subevent": p["subevent"]} for p in found]
            added = store.put_secrets(rows) if rows else 0
            store.put(**{f"pretix:{slug}:orders_since": generated or osince})
            self._pulled(f"{slug}/orders")
        except (PretixError, ValueError) as exc:
            failed("orders", exc)

        if keys is None or checkin is None:
            return None, added
        valid = [{"secret": r["secret"], "item": r["item"], "variation": r["variation"], "subevent": r["subevent"]}
                 for r in store.valid_secrets(slug) if not is_signed_secret(r["secret"])]
        return EventPull(slug, keys, checkin, set(revoked), {s for s, b in blocked.items() if b}, valid, unhonoured), added

    def _pull_secrets(self, api: PretixClient, slug: str, kind: str, items: dict[str, Any], since_name: str,
                      time_field: str) -> None:
        """Revoked (``created_since``) or blocked (``updated_since``) secrets since the stored
        cursor, into ``items`` (secret → when revoked, or whether blocked) and the store."""
        since = cursor(self.store.get(f"pretix:{slug}:{kind}_since"))
        results, generated = api.pages(f"events/{slug}/{kind}secrets/", {since_name: since} if since else {},
                                       f"{kind}secrets")
        newest = parse_time(since)
        for item in results:
            secret = item.get("secret")
            if not isinstance(secret, str) or not 1 <= len(secret) <= 1024:
                continue
            at = parse_time(item.get(time_field))
            items[secret] = (at.isoformat() if at else "") if kind == "revoked" else item.get("blocked") is True
            if at is not None and (newest is None or at > newest):
                newest = at
        next_since = generated or (newest.isoformat() if newest else None)
        self.store.put(**{f"pretix:{slug}:{kind}": items, f"pretix:{slug}:{kind}_since": next_since})
        self._pulled(f"{slug}/{kind}")

    def _pulled(self, what: str, error: str | None = None) -> None:
        """A pull of one kind of one event was tried: worked (``error`` None) or not."""
        now = time.time()
        with self._status_lock:
            pull = self.pull_status["pulls"].setdefault(what, {"ok_at": None})
            pull.update(at=now, ok=error is None, error=error[:200] if error else None)
            if error is None:
                pull["ok_at"] = self.pull_status["last_pull"][what] = now
        if error is None:
            self.contacts["pretix"].answered()

    def _set_status(self, **values: Any) -> None:
        with self._status_lock:
            self.pull_status.update(values)

    # --- OPN, when nothing else asks it ------------------------------------------------------

    def probe_opn(self) -> None:
        """Ask OPN whether it answers, with the key, when no upload did so for ``OPN_PROBE``
        seconds: ``gate bridge status`` then says whether OPN is reachable before it is needed."""
        contact = self.contacts.get("opn")
        if contact is None or self.config.opn is None:
            return
        last = contact.snapshot()["at"]
        if last is not None and time.time() - last < OPN_PROBE:
            return
        client = OpnClient(self.config.opn.url, self.config.opn.api_key)
        try:
            status, why = client.probe()
        finally:
            client.close()
        contact.failed(status, why) if why else contact.answered(status)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Made afresh (the store's queue counts): the status loop makes one a second."""
        with self._status_lock:  # the puller changes it meanwhile: serialise a copy
            pretix = copy.deepcopy(self.pull_status)
        return {"state": "running" if not self.stopping.is_set() else "stopped", "pid": os.getpid(), "at": time.time(),
                "venue": self.config.venue, "broker": self.listener.status(), "pretix": pretix,
                "services": {name: contact.snapshot() for name, contact in self.contacts.items()},
                "published": {"bundle": _public(self.store.get("bundle")), "delta": _public(self.store.get("delta"))},
                "queue": self.store.queue_stats(), "lag_window_s": LAG_WINDOW,
                "failed_checkins": self.intake.status()}

    def snapshot(self) -> dict[str, Any]:
        """The last status made (at most a second old): what metrics scrapes and the bus read,
        so that however often they come, the store is read once a second."""
        return self._snapshot if self._snapshot is not None else self.status()

    def bus_status(self) -> bytes:
        """The retained ``bridge/status``: the snapshot less what only an operator on this
        machine needs (pid, the unhonoured list settings' texts stay in status.json too)."""
        s = self.snapshot()
        broker = s["broker"]
        return encode_status(self.config.broker.username, "online", venue=s["venue"], at=round(s["at"], 3),
                             broker={k: broker.get(k, 0) for k in ("records", "refused", "jobs", "scans")},
                             services=s["services"], pulls=s["pretix"]["pulls"], enrolled=s["pretix"]["enrolled"],
                             published=s["published"], queue=s["queue"], lag_window_s=s["lag_window_s"],
                             failed_checkins=s["failed_checkins"])

    def write_status(self) -> None:
        self._snapshot = self.status()
        write_json(self.config.status_file, self._snapshot)

    def _status_loop(self) -> None:
        next_bus = 0.0
        while not self.stopping.wait(1.0):
            try:
                self.write_status()
                if time.monotonic() >= next_bus:
                    next_bus = time.monotonic() + self.config.broker.status_interval
                    self.listener.publish_status()
            except Exception:
                log.exception("status not written")
        self.store.close()


def _public(published: Any) -> Any:
    """What the status shows of a publication: versions and counts, never the keys it lists."""
    if not isinstance(published, dict):
        return None
    return {k: v for k, v in published.items() if k in ("version", "base", "at", "documents", "bytes")} | (
        {"revocations": len(published["keys"])} if "keys" in published else {})


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)
