"""What an operator sees of the bridge, and what pretix learns of refusals: against a real pretix
2026.8.0, a real mosquitto with the shipped ACL (and its mosquitto_sub), real lanes.

- the lanes' refusals of pretix tickets reach pretix as failed check-ins (and only as those);
- the queue, the upload lag and pretix's reachability on ``gate bridge status``, on the
  metrics endpoint and on the bus (retained, with the broker's Last Will when the bridge dies)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

from hwsim.broker import free_port

from gate.bridge.refusals import read_refusal
from tests.bridge.helpers import (
    Subscriber,
    Venue,
    admit,
    failed_checkins,
    gate_cli,
    trust_moved,
    versions,
)
from tests.bridge.test_pretix import enrol
from tests.support.lanes import wait_until
from tests.support.pretix import PretixServer
from tests.support.venue import VENUE

KEY = "ab" * 32


def test_refusals_at_a_lane_reach_pretix_as_failed_checkins_and_never_as_checkins(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(["lane-a"])
    list_id = pretix.event("democon")["list"]
    config = venue.bridge_config([{"slug": "democon", "checkin_list": list_id}])
    enrol(venue, pretix, config)
    bridge = venue.start_bridge(config)
    (lane,) = venue.start_lanes()
    used, cancelled = pretix.event("democon")["tickets"][:2]

    admit(lane, used["secret"])
    assert lane.present(used["secret"], walks=None)["reason"] == "already_used"  # shown again: refused
    lane.idle()
    wait_until(lambda: len(failed_checkins(pretix, "democon")) == 1, 30)
    # (pretix on SQLite answers a write during another with 500 "database is locked": the
    # back office's cancel waits until the bridge's uploads are in, as a person would not notice)
    wait_until(lambda: bridge.queue("pretix")["done"] == 1 and bridge.queue("pretix-failed")["done"] == 1, 30)
    before = versions([lane])
    pretix.cancel("democon", cancelled["order"])
    wait_until(lambda: trust_moved([lane], before), 30)
    assert lane.present(cancelled["secret"], walks=None)["reason"] == "revoked"
    lane.idle()

    wait_until(lambda: len(failed_checkins(pretix, "democon")) == 2, 30)
    failed = {f["error_reason"]: f for f in failed_checkins(pretix, "democon")}
    assert set(failed) == {"already_redeemed", "revoked"}
    assert failed["already_redeemed"]["position"] == used["position"]  # on the order, in pretix's back office
    assert failed["already_redeemed"]["error_explanation"] == "gate lane-a: already_used"
    assert failed["revoked"]["list"] == list_id and failed["revoked"]["type"] == "entry"
    wait_until(lambda: bridge.queue("pretix-failed")["done"] == 2, 10)
    assert [c["position"] for c in pretix.checkins("democon")] == [used["position"]]  # the refusals made no check-in
    assert cancelled["secret"] not in bridge.log() and used["secret"] not in bridge.log()


def test_queue_lag_and_an_unreachable_pretix_on_status_metrics_and_the_bus(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(["lane-a"])
    port = free_port()
    config = venue.bridge_config([{"slug": "democon", "checkin_list": pretix.event("democon")["list"]}],
                                 broker={"status_interval": 1.0}, metrics=f"127.0.0.1:{port}")
    enrol(venue, pretix, config)
    watcher = Subscriber(venue.broker, f"gate/v2/{VENUE}/bridge/status")
    try:
        bridge = venue.start_bridge(config)
        (lane,) = venue.start_lanes()
        wait_until(lambda: watcher.last().get("state") == "online" and _pretix(watcher.last()).get("reachable") is True, 30)
        assert _pretix(watcher.last())["authorised"] is True

        pretix.stop()
        tickets = pretix.event("democon")["tickets"][:3]
        for ticket in tickets:
            admit(lane, ticket["secret"])
        wait_until(lambda: bridge.queue("pretix")["pending"] == 3 and _pretix(bridge.status()).get("reachable") is False, 30)
        code, out = gate_cli("bridge", "status", "--bridge-config", str(config))
        assert code == 1, out  # running, but something needs attention
        assert re.search(r"queue +pretix +pending 3 ", out) and "! pretix: not reachable" in out
        assert all(len(line) <= 80 for line in out.splitlines()), out
        metrics = _scrape(port)
        assert 'gate_bridge_jobs{sink="pretix",state="pending"} 3.0' in metrics
        assert 'gate_bridge_service_reachable{service="pretix"} 0.0' in metrics
        wait_until(lambda: watcher.last().get("queue", {}).get("pretix", {}).get("pending") == 3
                   and _pretix(watcher.last()).get("reachable") is False, 15)

        pretix.start()
        wait_until(lambda: len(pretix.checkins("democon")) == 3 and bridge.queue("pretix")["pending"] == 0, 90)
        wait_until(lambda: bridge.queue("pretix").get("lag_n") == 3 and gate_cli(
            "bridge", "status", "--bridge-config", str(config))[0] == 0, 30)
        queue = bridge.queue("pretix")
        assert queue["lag_p50_s"] is not None and queue["lag_p99_s"] >= queue["lag_p50_s"] > 0
        assert re.search(r'gate_bridge_upload_lag_seconds\{quantile="0.99",sink="pretix"\} [0-9.]+', _scrape(port))
        assert "gate_bridge_service_reachable{service=\"pretix\"} 1.0" in _scrape(port)
        code, out = gate_cli("bridge", "check", "--bridge-config", str(config))
        assert code == 0, out

        bridge.kill()  # no goodbye: the broker says it for the bridge (its Last Will)
        wait_until(lambda: watcher.last().get("state") == "offline", 30)
        assert watcher.last() == {"v": 2, "gate": "venue-bridge", "state": "offline"}
        wait_until(lambda: gate_cli("bridge", "status", "--bridge-config", str(config))[0] == 3, 30)
    finally:
        watcher.close()


def test_only_refusals_of_pretix_tickets_for_ticket_reasons_are_uploaded() -> None:
    def scan(**fields: object) -> bytes:
        return json.dumps({"v": 2, "gate": "lane-a", "accepted": False, "reason": "revoked", "format": "pretix_sig1",
                           "ticket_key": KEY, "direction": "in", "source": "scanner", "latency_ms": 1.2, **fields}).encode()

    refusal = read_refusal(scan(), "lane-a")
    assert refusal is not None and (refusal.reason, refusal.ticket_key) == ("revoked", KEY)
    assert read_refusal(scan(accepted=True, reason="ok"), "lane-a") is None
    assert read_refusal(scan(reason="gate_closed"), "lane-a") is None  # about the lane, not the ticket
    assert read_refusal(scan(format="gt1"), "lane-a") is None  # not pretix's ticket
    assert read_refusal(scan(reason="unreadable", format=None, ticket_key=None), "lane-a") is None
    for bad, sender in ((scan(), "lane-b"), (scan(ticket_key="secret-text"), "lane-a"), (b"[" * 100, "lane-a"),
                        (scan(direction="sideways"), "lane-a"), (scan(accepted="no"), "lane-a")):
        try:
            read_refusal(bad, sender)
        except ValueError:  # ScanError, or a field of the wrong type
            continue
        raise AssertionError(f"read as a refusal: {bad[:80]!r} from {sender}")


def _pretix(status: dict[str, Any]) -> dict[str, Any]:
    """What a status (the file's, the bus's) says of pretix ({} before the first one)."""
    return (status.get("services") or {}).get("pretix") or {}


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
