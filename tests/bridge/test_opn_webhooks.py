"""The bridge's pushes besides pretix: the OPN Ticket Engine (a stand-in written from its
documentation, killed and started again during the run) and signed Standard Webhooks (checked by
the reference library at the receiving end)."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from hwsim.broker import free_port

from tests.bridge.helpers import ROOT, Venue, admit
from tests.bridge.test_pretix import enrol
from tests.support.lanes import Tickets, wait_until
from tests.support.pretix import PretixServer

API_KEY = "opn-test-key-0123456789"


class OpnStandIn:
    """tests/support/opn_standin.py in its own process, on one port and one database."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "opn.db"
        self.key_file = workdir / "opn.key"
        self.key_file.write_text(API_KEY)
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.workdir / "opn.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.opn_standin", "--port", str(self.port),
                                         "--db", str(self.db), "--api-key-file", str(self.key_file)],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == b"ready"

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stream(self, actions: list[dict[str, Any]]) -> dict[str, Any]:
        """What the ticket shop sends (events and sold tickets)."""
        answer = httpx.post(f"{self.url}/stream", json=actions, headers={"X-Api-Key": API_KEY})
        assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text
        return answer.json()

    def accepted(self, action: str) -> list[str]:
        conn = sqlite3.connect(self.db)
        try:
            return [r[0] for r in conn.execute("SELECT ticket_id FROM actions WHERE action=?", (action,))]
        finally:
            conn.close()


class Receiver:
    """A venue's webhook endpoint: verifies each delivery with the Standard Webhooks library;
    answers 503 to the first one (the bridge must try again)."""

    def __init__(self, secret: str) -> None:
        from standardwebhooks.webhooks import Webhook

        self.verifier = Webhook(secret)
        self.deliveries: list[tuple[str, dict[str, Any]]] = []
        self.rejected = 0
        self.first = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    message = receiver.verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:
                    receiver.rejected += 1
                    self.send_response(400)
                else:
                    if receiver.first:
                        receiver.first = False
                        self.send_response(503)
                    else:
                        receiver.deliveries.append((self.headers["webhook-id"], message))
                        self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def opn_engine(tmp_path: Path) -> Iterator[OpnStandIn]:
    engine = OpnStandIn(tmp_path)
    yield engine
    if engine.process is not None:
        engine.kill()


def test_every_confirmed_passage_reaches_opn_exactly_once_and_a_signed_webhook_through_an_opn_outage(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer, opn_engine: OpnStandIn, tmp_path: Path,
        tickets: Tickets) -> None:
    gt1 = [(tickets.static(cti=bytes([9, i]) * 8), (bytes([9, i]) * 8).hex()) for i in range(3)]  # the box office's own
    tickets = pretix.event("democon")["tickets"][:30]
    ticket_id = {t["secret"]: f"democon-{t['order']}-1" for t in tickets}
    (tmp_path / "opn-gt1.txt").write_text("# GT1 tickets twinned on OPN\n" + "\n".join(i for _, i in gt1[:2]) + "\n")
    opn_engine.stream([{"action": "newEvent", "data": {"eventId": "democon", "currency": "EUR", "eventName": "democon"}}] +
                      [{"action": "soldTicket", "data": {"eventId": "democon", "ticketId": ticket_id[t["secret"]],
                                                         "userId": f"buyer-{i}", "price": "10.00"}}
                       for i, t in enumerate(tickets)] +
                      [{"action": "soldTicket", "data": {"eventId": "democon", "ticketId": ident, "userId": f"gt1-{ident[:4]}",
                                                         "price": "0"}} for _, ident in gt1])
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    (tmp_path / "webhook.secret").write_text(secret)
    receiver = Receiver(secret)
    venue = make_venue(["lane-a", "lane-b"])
    config = venue.bridge_config(
        [{"slug": "democon", "checkin_list": pretix.event("democon")["list"]}],
        opn={"url": opn_engine.url, "api_key_file": str(opn_engine.key_file), "events": ["democon"], "batch_size": 20,
             "gt1_tickets": str(tmp_path / "opn-gt1.txt")},
        webhooks=[{"url": receiver.url, "secret_file": str(tmp_path / "webhook.secret")}])
    enrol(venue, pretix, config)
    bridge = venue.start_bridge(config)
    lanes = venue.start_lanes()
    passed, reverted = [], []
    try:
        for i, ticket in enumerate(tickets):
            if i == 10:
                opn_engine.kill()
            if i == 20:
                opn_engine.start()
            lane = lanes[i % 2]
            if i % 10 == 7:
                assert lane.present(ticket["secret"], walks=False)["accepted"]
                lane.idle()  # the passage timeout: the lane reverts the admission
                reverted.append(ticket_id[ticket["secret"]])
            else:
                admit(lane, ticket["secret"])
                passed.append(ticket_id[ticket["secret"]])
        for text, ident in gt1:  # the first two are listed as OPN-backed, the third is not
            admit(lanes[0], text)
        passed += [ident for _, ident in gt1[:2]]
        wait_until(lambda: sorted(opn_engine.accepted("checkedInTicket")) == sorted(passed), 60)
        wait_until(lambda: bridge.queue("opn")["pending"] == 0, 30)
        assert sorted(opn_engine.accepted("checkedInTicket")) == sorted(passed)  # each exactly once, no revert
        assert sorted(set(opn_engine.accepted("scannedTicket"))) == sorted(passed + reverted)  # every admission scanned
        assert gt1[2][1] not in opn_engine.accepted("scannedTicket")  # not OPN-backed: never sent
        wait_until(lambda: len({i for i, _ in receiver.deliveries}) == len(passed) + 1, 30)  # webhooks: every passage
        assert receiver.rejected == 0  # every signature verified
        by_id = {i: m for i, m in receiver.deliveries}
        assert all(m["type"] == "gate.passage" and len(m["data"]["ticket_key"]) == 64 for m in by_id.values())
        everything = json.dumps(receiver.deliveries)
        assert not any(t["secret"] in everything for t in tickets)  # no ticket text leaves the venue
    finally:
        receiver.close()
