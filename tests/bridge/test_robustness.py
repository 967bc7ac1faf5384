"""The bridge's parts under what a venue will meet sooner or later (no pretix process): a gate
naming another gate's admission, a job its destination keeps refusing, a pretix that answers
one event or one kind badly, oversized answers, config values that are not numbers, plain http.

Fake servers here answer exactly what each test needs; the real pretix is in test_pretix.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from gate.bridge import opn, pretix
from gate.bridge.builder import secret_key
from gate.bridge.config import BridgeConfig, parse
from gate.bridge.service import Bridge
from gate.bridge.store import DEAD, DONE, PENDING, BridgeStore, NewJob, admission_id
from gate.bridge.uploader import Worker, opn_delivery, pretix_delivery
from gate.errors import ConfigError
from gate.store.ledger import Record
from tests.bridge.test_parts import KEY, PRETIX_LIST, config_file
from tests.support.lanes import wait_until

Handler = Callable[[str, str, bytes], tuple[int, bytes, dict[str, str]]]


class FakeServer:
    """An HTTP server whose every answer comes from ``handler(method, path, body)``; it keeps
    every request it saw as (method, path with query)."""

    def __init__(self, handler: Handler) -> None:
        self.seen: list[tuple[str, str]] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path))
                status, data, headers = handler(self.command, self.path, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(tmp_path: Path, **bridge: Any) -> BridgeConfig:
    data = config_file(tmp_path, **bridge)
    return parse(data, str(tmp_path / "bridge.toml"))


# --- 1. a gate settles only its own admissions ---------------------------------------------------

def _rec(origin: str, seq: int, kind: str, ref: tuple[str, str, int] | None = None) -> Record:
    admission = kind == "admission"
    return Record(origin, seq, kind, 100.0 + seq, "ab" * 32 if admission else None, "pretix_sig1" if admission else None,
                  "in" if admission else None, ref[0] if ref else None, ref[2] if ref else None, None, None,
                  "e-" + origin, ref[1] if ref else None)


def _pretix_plan(admission: Any, passage: Any) -> list[NewJob]:
    if passage is None:
        return []
    return [NewJob("pretix", f"pretix:{admission_id(admission)}", {"nonce": admission_id(admission)}, passage["at"])]


@pytest.mark.parametrize("passage_first", [False, True])
def test_a_passage_of_another_gate_never_settles_an_admission_and_the_own_revert_wins(
        tmp_path: Path, passage_first: bool) -> None:
    store = BridgeStore(tmp_path / "bridge.db")
    admission = _rec("lane-1", 1, "admission")
    foreign = _rec("lane-2", 1, "passage", ref=("lane-1", "e-lane-1", 1))  # lane-2 names lane-1's admission
    ordered = [foreign, admission] if passage_first else [admission, foreign]
    for record in ordered:
        store.take_records([record], _pretix_plan)
    assert store.jobs("pretix") == [] and store.confirmed() == []
    store.take_records([_rec("lane-1", 2, "revert", ref=("lane-1", "e-lane-1", 1))], _pretix_plan)
    assert store.jobs("pretix") == [] and store.confirmed() == []  # nobody walked through: never uploaded
    settled = store._conn().execute("SELECT settled FROM records WHERE origin='lane-1' AND seq=1").fetchone()[0]
    assert settled == "revert"


def test_the_earliest_settler_of_the_own_stream_decides(tmp_path: Path) -> None:
    store = BridgeStore(tmp_path / "bridge.db")
    ref = ("lane-1", "e-lane-1", 1)
    # heard in one batch, out of order: the revert (seq 2) came before the passage (seq 3) at the lane
    store.take_records([_rec("lane-1", 3, "passage", ref=ref), _rec("lane-1", 2, "revert", ref=ref),
                        _rec("lane-1", 1, "admission")], _pretix_plan)
    assert store.jobs("pretix") == []


# --- 2. an idle worker of several does not spin ------------------------------------------------

def test_next_due_counts_only_the_workers_own_part(tmp_path: Path) -> None:
    store = BridgeStore(tmp_path / "bridge.db")
    store.take_records([_rec("lane-1", 1, "admission"), _rec("lane-1", 2, "passage", ref=("lane-1", "e-lane-1", 1))],
                       _pretix_plan)
    (job,) = store.jobs("pretix")
    mine, other = (job["id"] % 2, 2), ((job["id"] + 1) % 2, 2)
    assert store.next_due("pretix", mine) == job["next_at"]
    assert store.next_due("pretix", other) is None  # the other worker sleeps until woken, not spins


# --- 3. a job pretix keeps refusing does not hold up the queue ---------------------------------

SECRET_BAD, SECRET_GOOD = "bad" * 10, "good" * 10


@pytest.mark.parametrize("answer,state", [((400, b"<html>Bad Request</html>"), DEAD),
                                          ((500, b"Internal Server Error"), PENDING)])
def test_a_job_pretix_refuses_does_not_stop_the_next_jobs_upload(
        tmp_path: Path, answer: tuple[int, bytes], state: str) -> None:
    def handler(method: str, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if method == "POST" and path.endswith("/checkinrpc/redeem/"):
            if json.loads(body)["secret"] == SECRET_BAD:
                return answer[0], answer[1], {"Content-Type": "text/html"}
            return 201, b'{"status": "ok"}', {"Content-Type": "application/json"}
        return 404, b"{}", {}

    server = FakeServer(handler)
    config = _config(tmp_path, pretix={"events": [{"slug": "democon", "checkin_list": 1}]})
    assert config.pretix is not None
    pretix.Device(server.url, "venue", 1, "t").save(config.pretix.device_file)
    store = BridgeStore(config.database)
    store.put_secrets([{"ticket_key": secret_key(s), "event": "democon", "secret": s, "order": "ABC", "positionid": 1,
                        "id": i, "status": "p", "item": 1, "variation": 0, "subevent": 0}
                       for i, s in enumerate((SECRET_BAD, SECRET_GOOD))])
    for seq, secret in ((1, SECRET_BAD), (2, SECRET_GOOD)):
        nonce = f"lane-1-e1-{seq}"
        with store._tx() as conn:
            conn.execute("INSERT INTO jobs (sink, key, body, next_at, created_at, event_at) VALUES (?,?,?,?,?,?)",
                         ("pretix", f"pretix:{nonce}", json.dumps({"ticket_key": secret_key(secret), "nonce": nonce,
                                                                   "at": 100.0, "direction": "in"}),
                          time.time(), time.time(), time.time()))
    worker = Worker(store, "pretix", pretix_delivery(config, store))
    worker.start()
    try:
        wait_until(lambda: [j["state"] for j in store.jobs("pretix")][1] == DONE, 10)
    finally:
        worker.stop()
        worker.join(5)
        server.close()
    bad = store.jobs("pretix")[0]
    assert bad["state"] == state and bad["attempts"] >= 1
    if state == PENDING:  # may pass: it waits its own delay, later jobs go meanwhile
        assert bad["next_at"] > bad["created_at"]


def test_one_opn_action_that_fails_its_request_ends_up_alone_and_the_others_are_accepted(tmp_path: Path) -> None:
    def handler(method: str, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        actions = json.loads(body)
        if any(a["data"]["ticketId"] == "poison" for a in actions):
            return 500, b"boom", {}
        data = [{"status": "success", "action": a["action"], "actionPromise": f"p-{a['data']['ticketId']}"} for a in actions]
        return 200, json.dumps({"status": "success", "data": data}).encode(), {"Content-Type": "application/json"}

    server = FakeServer(handler)
    (tmp_path / "opn.key").write_text("k")
    config = _config(tmp_path, opn={"url": server.url, "api_key_file": "opn.key", "batch_size": 10})
    store = BridgeStore(config.database)
    ids = ["poison", "good-1", "good-2"]
    store.put_opn_tickets([(f"{i:064x}", t) for i, t in enumerate(ids)])
    with store._tx() as conn:
        for i, _ in enumerate(ids):
            conn.execute("INSERT INTO jobs (sink, key, body, next_at, created_at, event_at) VALUES (?,?,?,?,?,?)",
                         ("opn", f"opn:checkedin:{i}", json.dumps({"action": opn.CHECKED_IN, "ticket_key": f"{i:064x}",
                                                                  "format": "gt1", "at": 100.0}), 0.0, 0.0, 0.0))
    deliver = opn_delivery(config, store)
    try:
        assert deliver(store.due("opn", 1e12, 10)) > 0  # the batch of 3 fails: all kept, next time fewer
        assert all(j["state"] == PENDING for j in store.jobs("opn"))
        assert deliver(store.due("opn", 1e12, 10)) > 0  # the first alone: it fails alone
        poison, *good = store.jobs("opn")
        assert poison["next_at"] > max(j["next_at"] for j in good)  # it waits longer than the others
        due_good = max(j["next_at"] for j in good)
        assert deliver(store.due("opn", due_good, 10)) == 0.0  # one more action alone: accepted...
        assert deliver(store.due("opn", due_good, 10)) == 0.0  # ...and the batches are whole again
        assert [j["state"] for j in store.jobs("opn")] == [PENDING, DONE, DONE]
        assert [p for m, p in server.seen] == ["/stream"] * 4
    finally:
        server.close()


# --- 4, 7. one failing event or kind does not hold up revocations; cursors are times ------------

def test_a_failing_event_and_a_failing_orders_pull_do_not_hold_up_revocations(tmp_path: Path) -> None:
    generated = "2026-05-01T10:00:00.123456+00:00"
    good_order = {"code": "ABC12", "status": "p", "positions": [
        {"id": 7, "positionid": 1, "item": 3, "variation": None, "subevent": None, "secret": "rnd-secret-1"}]}
    malformed = {"code": "DEF34", "status": "p", "positions": [{"id": "x", "secret": 5}]}
    answers: dict[str, Any] = {"orders": 500}

    def page(results: list[Any]) -> bytes:
        return json.dumps({"count": len(results), "next": None, "previous": None, "results": results}).encode()

    def handler(method: str, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        plain = path.split("?")[0]
        base = "/api/v1/organizers/venue/events/"
        head = {"Content-Type": "application/json", "X-Page-Generated": generated}
        if plain.startswith(base + "broken/"):
            return 500, b"down", {}
        if plain == base + "democon/":
            return 200, json.dumps({"slug": "democon", "valid_keys": {"pretix_sig1": [KEY]}}).encode(), head
        if plain == base + "democon/checkinlists/":
            return 200, page([PRETIX_LIST]), head
        if plain == base + "democon/revokedsecrets/":
            return 200, page([{"id": 1, "secret": "revoked-secret", "created": "2026-05-01T09:59:00+00:00"}]), head
        if plain == base + "democon/blockedsecrets/":
            return 200, page([{"id": 1, "secret": "blocked-secret", "updated": "garbage", "blocked": True}]), head
        if plain == base + "democon/orders/":
            if answers["orders"] == 500:
                return 500, b"oops", {}
            return 200, page([good_order, malformed]), head
        return 404, b"{}", {}

    server = FakeServer(handler)
    config = _config(tmp_path, pretix={"events": [{"slug": "broken", "checkin_list": 1},
                                                  {"slug": "democon", "checkin_list": 1}]})
    assert config.pretix is not None
    pretix.Device(server.url, "venue", 1, "t").save(config.pretix.device_file)
    bridge = Bridge(config)
    published: list[tuple[str, bytes]] = []
    bridge.listener.publish = lambda topic, data, retain=True, timeout=10.0: published.append((topic, data)) or True  # type: ignore[method-assign]
    bridge.store.put(**{"pretix:democon:revoked_since": "yesterday; DROP TABLE"})  # a cursor that is not a time
    try:
        assert bridge.pull_once() is False  # some of it failed...
        assert published, "...and yet the revocations went out"
        status = bridge.status()["pretix"]
        assert "broken/event" in status["last_error"] and "democon/orders" in status["last_error"]
        assert "democon/revoked" in status["last_pull"] and "democon/orders" not in status["last_pull"]
        assert bridge.store.get("pretix:democon:revoked") == {"revoked-secret": "2026-05-01T09:59:00+00:00"}
        assert bridge.store.get("pretix:democon:blocked") == {"blocked-secret": True}
        assert bridge.store.get("pretix:democon:revoked_since") == generated  # pretix's X-Page-Generated
        assert not any("created_since" in p for _, p in server.seen)  # the garbage cursor was not sent

        answers["orders"] = 200  # orders come back, with one malformed order among them
        server.seen.clear()
        bridge.pull_once()
        assert bridge.store.secret(secret_key("rnd-secret-1"))["order_code"] == "ABC12"
        assert bridge.status()["pretix"]["skipped_positions"] == {"democon": 1}
        assert any("created_since=2026-05-01T10%3A00%3A00.123456%2B00%3A00" in p for _, p in server.seen)
    finally:
        bridge.store.close()
        server.close()


def test_pretix_cursors_are_times_with_an_offset() -> None:
    assert pretix.cursor("2026-05-01T10:00:00Z") == "2026-05-01T10:00:00+00:00"
    for bad in ("2026-05-01T10:00:00", "tomorrow", "", None, "9" * 65):
        assert pretix.cursor(bad) is None


# --- 9. answers are read no further than the limit ---------------------------------------------

def test_an_oversized_answer_is_cut_off_while_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = b'{"results": [], "next": null, "pad": "' + b"x" * 200_000 + b'"}'
    server = FakeServer(lambda method, path, body: (200, huge, {"Content-Type": "application/json"}))
    monkeypatch.setattr(pretix, "MAX_BODY", 10_000)
    monkeypatch.setattr(opn, "MAX_BODY", 10_000)
    client = pretix.PretixClient(pretix.Device(server.url, "venue", 1, "t"))
    engine = opn.OpnClient(server.url, "k")
    try:
        with pytest.raises(pretix.PretixError, match="larger than 10000 bytes"):
            client.pages("events/democon/orders/", {}, "orders")
        with pytest.raises(opn.OpnError, match="larger than 10000 bytes"):
            engine.stream([opn.action(opn.CHECKED_IN, "a", 1)])
    finally:
        client.close()
        engine.close()
        server.close()


# --- 6, 8, 10. the config ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_poll_interval_that_is_not_a_finite_number_is_a_config_error(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, poll_interval=value)
    assert any(p.startswith("bridge.poll_interval: must be a finite number") for p in caught.value.problems)


def _hook(tmp_path: Path, url: str, **more: Any) -> dict[str, Any]:
    (tmp_path / "hook.secret").write_text("whsec_" + "a2tr" * 8)
    return {"url": url, "secret_file": "hook.secret", **more}


def test_plain_http_is_refused_beyond_this_machine_unless_the_config_allows_it(tmp_path: Path) -> None:
    (tmp_path / "opn.key").write_text("k")
    remote = {"opn": {"url": "http://opn.example", "api_key_file": "opn.key"},
              "webhooks": [_hook(tmp_path, "http://crm.example/hook")]}
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, **remote)
    assert {p.split(":")[0] for p in caught.value.problems} == {"bridge.opn.url", "bridge.webhooks[0].url"}
    assert _config(tmp_path, allow_insecure=True, **remote).allow_insecure
    assert _config(tmp_path, webhooks=[_hook(tmp_path, "http://127.0.0.1:9/hook"), _hook(tmp_path, "http://[::1]:9/x"),
                                       _hook(tmp_path, "https://crm.example/hook")]).webhooks
    with pytest.raises(pretix.PretixError, match="in the clear"):
        pretix.PretixClient(pretix.Device("http://pretix.example", "venue", 1, "t"))
    with pytest.raises(pretix.PretixError, match="in the clear"):
        pretix.enrol("http://pretix.example", "token")
    pretix.PretixClient(pretix.Device("http://pretix.example", "venue", 1, "t"), allow_insecure=True).close()


def test_a_webhook_receivers_queue_does_not_depend_on_its_place_in_the_list(tmp_path: Path) -> None:
    a, b = _hook(tmp_path, "https://a.example/h"), _hook(tmp_path, "https://b.example/h", name="crm")
    first = _config(tmp_path, webhooks=[a, b]).webhooks
    second = _config(tmp_path, webhooks=[b, a]).webhooks
    assert {h.url: h.sink for h in first} == {h.url: h.sink for h in second}
    assert first[1].sink == "webhook-crm"
    with pytest.raises(ConfigError, match="own url or name"):
        _config(tmp_path, webhooks=[a, dict(a)])


def test_an_opn_action_never_overtakes_an_earlier_action_of_its_ticket_that_waits(tmp_path: Path) -> None:
    server = FakeServer(lambda method, path, body: (500, b"unused", {}))
    (tmp_path / "opn.key").write_text("k")
    config = _config(tmp_path, opn={"url": server.url, "api_key_file": "opn.key"})
    store = BridgeStore(config.database)
    store.put_opn_tickets([("ab" * 32, "ticket-1")])
    later = time.time() + 3600
    with store._tx() as conn:  # the scan failed and waits; the check-in of the same ticket is due
        for action, next_at in ((opn.SCANNED, later), (opn.CHECKED_IN, 0.0)):
            conn.execute("INSERT INTO jobs (sink, key, body, next_at, created_at, event_at) VALUES (?,?,?,?,?,?)",
                         ("opn", f"opn:{action}", json.dumps({"action": action, "ticket_key": "ab" * 32, "format": "gt1",
                                                             "at": 100.0}), next_at, 0.0, 0.0))
    try:
        assert opn_delivery(config, store)(store.due("opn", time.time(), 10)) == 0.0
        assert server.seen == []  # nothing sent
        assert [j["next_at"] for j in store.jobs("opn")] == [later, later]  # the check-in waits for the scan
    finally:
        server.close()
