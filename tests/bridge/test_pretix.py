"""The bridge against a real pretix 2026.8.0 (tests/support/pretix.py), real mosquitto with the
shipped ACL, real lanes: what a venue would notice in pretix and at the turnstiles."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable

from tests.bridge.helpers import Venue, admit, gate_cli, trust_moved, versions
from tests.support.lanes import wait_until
from tests.support.pretix import PretixServer

GATES = ["lane-a", "lane-b", "lane-c"]


def enrol(venue: Venue, pretix: PretixServer, config: Path) -> dict[str, Any]:
    token = venue.secrets / "pretix-init.token"
    token.write_text(pretix.device_token)
    code, out = gate_cli("bridge", "enrol", "--bridge-config", str(config), "--url", pretix.url, "--token-file", str(token))
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_enrolled_bridge_opens_lanes_to_tickets_sold_in_pretix_and_uploads_only_confirmed_passages(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(GATES[:2])
    config = venue.bridge_config([{"slug": "democon", "checkin_list": pretix.event("democon")["list"]},
                                  {"slug": "randcon", "checkin_list": pretix.event("randcon")["list"]}])
    answer = enrol(venue, pretix, config)
    device_file = Path(answer["device_file"])
    assert answer["organizer"] == "venue" and device_file.stat().st_mode & 0o077 == 0  # the token: the bridge's alone
    assert pretix.device_token not in device_file.read_text()
    code, out = gate_cli("bridge", "enrol", "--bridge-config", str(config), "--url", pretix.url, "--token-file",
                         str(venue.secrets / "pretix-init.token"))
    assert code == 1 and "already been used" in out  # an initialization token is good once

    bridge = venue.start_bridge(config)
    a, b = venue.start_lanes()
    sold = pretix.sell("democon")  # sold in pretix now, after the bridge's first pull
    random_ticket = pretix.event("randcon")["tickets"][0]["secret"]

    decision = admit(a, sold["secret"])  # signed secret: the event's key came in the bundle
    assert decision["format"] == "pretix_sig1"
    assert admit(b, random_ticket)["format"] == "pretix_random"  # random secret: in the bundle's valid list
    assert b.present(sold["secret"], walks=None)["reason"] == "already_used"  # the venue's ledger, as before
    b.idle()
    not_passed = pretix.event("democon")["tickets"][0]["secret"]
    assert a.present(not_passed, walks=False)["accepted"]  # opened, nobody walked through: reverted
    a.idle()
    wait_until(lambda: a.records("revert"), 5)

    wait_until(lambda: len(pretix.checkins("democon")) == 1 and len(pretix.checkins("randcon")) == 1, 15)
    checkin = pretix.checkins("democon")[0]
    assert checkin["position"] == sold["id"] and checkin["type"] == "entry" and checkin["list"] == pretix.event("democon")["list"]
    admitted_at = next(r["at"] for r in a.records("admission") if r["ticket_key"] == decision["ticket_key"])
    assert abs(_unix(checkin["datetime"]) - admitted_at) < 0.01  # the lane's time, not the upload's
    # the revert was never queued: nothing of it can reach pretix later
    wait_until(lambda: bridge.queue("pretix")["done"] == 2 and bridge.queue("pretix")["pending"] == 0, 5)
    assert "enrolled" in gate_cli("bridge", "status", "--bridge-config", str(config))[1]
    code, out = gate_cli("bridge", "check", "--bridge-config", str(config))
    assert code == 0, out
    assert pretix.device_token not in bridge.log() and sold["secret"] not in bridge.log()


def test_cancelled_order_and_blocked_ticket_are_refused_at_every_lane_within_the_poll_interval(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(GATES)
    config = venue.bridge_config([{"slug": "democon", "checkin_list": pretix.event("democon")["list"]}], poll_interval=1.0)
    enrol(venue, pretix, config)
    venue.start_bridge(config)
    lanes = venue.start_lanes()
    cancelled, blocked = pretix.event("democon")["tickets"][:2]

    before = versions(lanes)
    started = time.monotonic()
    pretix.cancel("democon", cancelled["order"])
    wait_until(lambda: trust_moved(lanes, before), 30)
    latency = time.monotonic() - started
    for lane in lanes:
        assert lane.present(cancelled["secret"], walks=None)["reason"] == "revoked"
        lane.idle()

    before = versions(lanes)
    pretix.block("democon", blocked["position"])
    wait_until(lambda: trust_moved(lanes, before), 30)
    for lane in lanes:
        assert lane.present(blocked["secret"], walks=None)["reason"] in ("revoked", "blocked")
        lane.idle()
    assert all(lane.pulses("unlock_in") == 0 for lane in lanes)
    _note("cancel_to_refused_s", round(latency, 2))
    assert latency < 30


def test_200_admissions_over_3_lanes_bridge_killed_twice_pretix_stopped_once_pretix_ends_with_the_passages(
        make_venue: Callable[[list[str]], Venue], pretix: PretixServer) -> None:
    venue = make_venue(GATES)
    config = venue.bridge_config([{"slug": "democon", "checkin_list": pretix.event("democon")["list"]}])
    enrol(venue, pretix, config)
    bridge = venue.start_bridge(config)
    lanes = venue.start_lanes()
    tickets = [t for t in pretix.event("democon")["tickets"][:200]]
    rng = random.Random(20)
    reverted = set(rng.sample(range(200), 10))  # opened, nobody walked through
    passed: set[int] = set()
    for i, ticket in enumerate(tickets):
        lane = lanes[i % 3]
        if i == 50 or i == 120:
            bridge.kill()  # mid-stream: what it had not uploaded is in its queue, what it had not heard in the broker
        if i == 60 or i == 130:
            bridge.start()
        if i == 80:
            pretix.stop()
        if i == 100:
            pretix.start()
        if i in reverted:
            assert lane.present(ticket["secret"], walks=False)["accepted"]
            lane.idle()  # the passage timeout: the lane reverts the admission
        else:
            admit(lane, ticket["secret"])
            passed.add(ticket["position"])
    wait_until(lambda: sum(len([r for r in lane.records("revert") if r["origin"] == lane.daemon.config.gate_id])
                           for lane in lanes) == len(reverted), 10)

    wait_until(lambda: {c["position"] for c in pretix.checkins("democon")} >= passed, 120)
    wait_until(lambda: bridge.queue("pretix")["pending"] == 0, 30)
    checkins = pretix.checkins("democon")
    positions = [c["position"] for c in checkins]
    assert sorted(positions) == sorted(passed)  # none missing, none twice, no revert
    assert bridge.queue("pretix")["dead"] == 0
    _note("upload_lag_p99_s_after_kills", bridge.queue("pretix").get("lag_p99_s"))


def _unix(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _note(name: str, value: Any) -> None:
    """Figures for the report (BENCHMARKS-style), next to the pretix timings of this run."""
    path = Path(__file__).resolve().parents[2] / ".cache" / "pretix" / "bridge-figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures.setdefault(name, []).append(value)
    path.write_text(json.dumps(figures))
