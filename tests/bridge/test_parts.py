"""The bridge's parts on their own (no pretix process): its config read strictly, pretix's
check-in list as a lane's document, OPN's answers read as hostile, webhook signatures checked
by the Standard Webhooks reference library, and the queue's bookkeeping on a real SQLite file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gate import trust
from gate.bridge import builder, opn, webhooks
from gate.bridge.config import parse
from gate.bridge.store import BridgeStore, NewJob, admission_id
from gate.errors import ConfigError
from gate.store.ledger import Record

# A check-in list exactly as pretix 2026.8.0 answers it (GET …/checkinlists/, measured).
PRETIX_LIST = {"id": 1, "name": "Entrance", "all_products": True, "limit_products": [], "subevent": None,
               "checkin_count": 0, "position_count": 3, "include_pending": False, "allow_multiple_entries": False,
               "allow_entry_after_exit": True, "rules": {}, "exit_all_at": None, "addon_match": False,
               "ignore_in_statistics": False, "consider_tickets_used": True}
KEY = ("LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQUtIRFJuTTF5b1VUaVpKcjlHZ0doUnhERG5UZkVvNDc5Sld5WUdnaWdKdmM9"
       "Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo=")


def config_file(tmp_path: Path, **bridge: Any) -> dict[str, Any]:
    (tmp_path / "admin.key").write_text("07" * 32)
    (tmp_path / "roster.json").write_text('{"gates": []}')
    return {"bridge": {"venue": "arena", "state_dir": str(tmp_path / "state"), "admin_key_file": "admin.key",
                       "roster": "roster.json", **bridge}}


def test_a_typo_in_the_bridge_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    data = config_file(tmp_path, pol_interval=5, pretix={"events": [{"slug": "democon", "checkin_list": 1, "uplaod": False}]})
    with pytest.raises(ConfigError) as caught:
        parse(data, str(tmp_path / "bridge.toml"))
    assert "bridge.pol_interval: unknown key" in caught.value.problems
    assert "bridge.pretix.events[0].uplaod: unknown key" in caught.value.problems


def test_no_admin_key_no_bridge(tmp_path: Path) -> None:
    data = config_file(tmp_path)
    data["bridge"]["admin_key_file"] = "missing.key"
    with pytest.raises(ConfigError) as caught:
        parse(data, str(tmp_path / "bridge.toml"))
    assert any("admin_key_file" in p and "does not start without it" in p for p in caught.value.problems)


def test_opn_events_must_be_pulled_from_pretix(tmp_path: Path) -> None:
    (tmp_path / "opn.key").write_text("k")
    data = config_file(tmp_path, opn={"url": "http://127.0.0.1:1", "api_key_file": "opn.key", "events": ["other"]})
    with pytest.raises(ConfigError) as caught:
        parse(data, str(tmp_path / "bridge.toml"))
    assert any("'other' is not one of [[bridge.pretix.events]]" in p for p in caught.value.problems)
    (tmp_path / "bridge.toml").write_text(tomli_w.dumps(config_file(tmp_path)))
    assert parse(config_file(tmp_path), str(tmp_path / "bridge.toml")).broker.username == "venue-bridge"


def test_pretix_check_in_list_as_pretix_sends_it_becomes_a_document_a_lane_takes() -> None:
    checkin, unhonoured = builder.checkin_list(PRETIX_LIST)
    assert unhonoured == []
    event = builder.EventPull("democon", [KEY], checkin, {"s" * 40}, set(), [], [])
    parsed = trust.parse_document(json.dumps(event.document()), "bundle doc")  # what a lane does with it
    assert parsed.format == "pretix"


def test_what_a_lane_cannot_honour_offline_is_named() -> None:
    _, unhonoured = builder.checkin_list({**PRETIX_LIST, "rules": {"and": [{"isAfter": [{"var": "now"}, {"buildTime": ["custom", "2026-01-01T00:00:00Z"]}]}]},
                                          "include_pending": True, "gates": [1]})
    assert [u.split(":")[0] for u in unhonoured] == ["rules", "include_pending", "gates"]


@pytest.mark.parametrize("status,body,error", [
    (200, {"status": "success", "data": []}, "0 results for 2 actions"),
    (200, {"status": "success", "data": [{"status": "success", "action": "checkedInTicket"}] * 2}, "without an actionPromise"),
    (200, {"status": "ok", "data": [{}, {}]}, "with status 'ok'"),
    (500, {"status": "success", "data": [{}, {}]}, "HTTP 500"),
    (200, [1, 2], "without a data list"),
    (200, {"status": "success", "data": [{"status": "success", "action": "scannedTicket", "actionPromise": "p"}] * 2},
     "not in the order sent"),
])
def test_an_opn_answer_that_does_not_match_the_batch_accepts_nothing(status: int, body: Any, error: str) -> None:
    actions = [opn.action(opn.CHECKED_IN, "democon-ABCDE-1", 1), opn.action(opn.CHECKED_IN, "democon-FGHIJ-1", 2)]
    with pytest.raises(opn.OpnError, match=error):
        opn.read_answer(json.dumps(body).encode(), status, actions)


def test_an_opn_multi_answer_is_read_action_by_action() -> None:
    actions = [opn.action(opn.CHECKED_IN, "a", 1), opn.action(opn.CHECKED_IN, "b", 2)]
    body = {"status": "multi", "data": [
        {"status": "success", "action": "checkedInTicket", "ticketId": "a", "actionPromise": "c08f35f7-b566-46ff-b92f-537efde00f37"},
        {"status": "error", "action": "checkedInTicket", "errors": [{"param": "ticketId", "message": "ticket_not_found"}]}]}
    first, second = opn.read_answer(json.dumps(body).encode(), 200, actions)
    assert first == opn.Outcome(True, "c08f35f7-b566-46ff-b92f-537efde00f37")
    assert not second.accepted and "ticket_not_found" in second.error


def test_webhook_signatures_verify_with_the_standard_webhooks_library() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = webhooks.payload("gate.passage", 1795300000.5, {"admission": "lane-1-3f9a-41", "ticket_key": "9f" * 32})
    import time as _time

    now = int(_time.time())
    headers = {"webhook-id": "msg_lane-1-3f9a-41", "webhook-timestamp": str(now),
               "webhook-signature": webhooks.sign(webhooks.secret_bytes(secret), "msg_lane-1-3f9a-41", now, body)}
    assert Webhook(secret).verify(body, headers)["data"]["admission"] == "lane-1-3f9a-41"
    headers["webhook-signature"] = webhooks.sign(webhooks.secret_bytes(secret), "msg_other", now, body)
    with pytest.raises(Exception):
        Webhook(secret).verify(body, headers)


def _record(seq: int, kind: str, ref: int | None = None, at: float = 100.0) -> Record:
    return Record("lane-1", seq, kind, at + seq, "ab" * 32 if kind == "admission" else None,
                  "pretix_sig1" if kind == "admission" else None, "in" if kind == "admission" else None,
                  "lane-1" if ref else None, ref, None, None, "e1", "e1" if ref else None)


def test_a_passage_heard_before_its_admission_and_records_heard_twice_make_one_job(tmp_path: Path) -> None:
    store = BridgeStore(tmp_path / "bridge.db")
    planned: list[str] = []

    def plan(admission: Any, passage: Any) -> list[NewJob]:
        if passage is None:
            return []
        planned.append(admission_id(admission))
        return [NewJob("pretix", f"pretix:{admission_id(admission)}", {"nonce": admission_id(admission)}, passage["at"])]

    assert store.take_records([_record(2, "passage", ref=1)], plan) == (1, 0)  # its admission not heard yet
    assert store.take_records([_record(1, "admission"), _record(2, "passage", ref=1)], plan) == (1, 1)
    assert store.take_records([_record(1, "admission"), _record(2, "passage", ref=1)], plan) == (0, 0)  # again: nothing
    assert store.take_records([_record(3, "admission"), _record(4, "revert", ref=3)], plan) == (2, 0)  # a revert: no job
    assert planned == ["lane-1-e1-1"]
    assert [j.body["nonce"] for j in store.due("pretix", 1e12, 10)] == ["lane-1-e1-1"]
    assert store.marks() == {("lane-1", "e1"): 4}
    assert (tmp_path / "bridge.db").stat().st_mode & 0o077 == 0


class _Hostile:
    """A server that answers as a hostile or broken pretix would; it remembers the tokens it saw."""

    def __init__(self, answers: dict[str, tuple[int, bytes]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Authorization", "")))
                status, body = next((v for k, v in answers.items() if self.path.startswith(k)), (404, b"{}"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_pretix_pagination_never_takes_the_device_token_to_another_origin() -> None:
    from gate.bridge.pretix import Device, PretixClient, PretixError

    other = _Hostile({"/": (200, b'{"results": [], "next": null}')})
    page = json.dumps({"results": [{"secret": "x"}], "next": f"{other.url}/steal"}).encode()
    server = _Hostile({"/api/v1/organizers/venue/events/democon/revokedsecrets/": (200, page)})
    client = PretixClient(Device(server.url, "venue", 1, "secret-device-token"))
    try:
        with pytest.raises(PretixError, match="another origin"):
            client.pages("events/democon/revokedsecrets/", {}, "revokedsecrets")
        assert other.seen == []  # the token never went there
    finally:
        client.close()
        server.close()
        other.close()


@pytest.mark.parametrize("body", [b"[" * 100_000, b"not json", b'{"results": "no list", "next": null}',
                                  b'{"results": [1, 2], "next": null}'])
def test_a_broken_pretix_answer_is_an_error_not_a_crash(body: bytes) -> None:
    from gate.bridge.pretix import Device, PretixClient, PretixError

    server = _Hostile({"/api/v1/organizers/venue/events/democon/orders/": (200, body)})
    client = PretixClient(Device(server.url, "venue", 1, "t"))
    try:
        with pytest.raises(PretixError):
            client.pages("events/democon/orders/", {}, "orders")
    finally:
        client.close()
        server.close()
