"""Power cuts: ``kill -9`` the daemon at random moments while people stream through the lane.

Each round starts ``gate run``, lets people through one after another (a fresh ticket each, a
person who walks through when the relay moves), and SIGKILLs the daemon at a random moment:
during start-up, between the ledger write and the relay, mid-passage, while a record is being
published. After every kill, with the daemon dead, the ledger file is checked:

- ``PRAGMA integrity_check`` says ok;
- every ticket whose relay was seen to move (the simulated relay's pin, reported over the
  control socket) has its admission in the ledger;
- this gate's sequence numbers run 1..n without a gap; no ticket was admitted twice;
- the ticket in flight at the kill, shown again after the restart, is ``already_used`` if its
  relay moved (a copy does not get in twice across a power cut).

At the end the lane runs once more, and every record in its ledger must reach the broker, with no
seq ever published for two different records.
"""

from __future__ import annotations

import collections
import logging
import random
import signal
import threading
import time
from pathlib import Path

from hwsim.broker import Mosquitto
from hwsim.harness.common import BusRecorder, Report, SimLane, Tickets, show
from hwsim.timing import percentile, wait

log = logging.getLogger(__name__)

GATE = "gate-1"


def run(workdir: Path, kills: int = 300, seed: int = 1, max_delay: float = 1.5, startup_share: float = 0.1,
        progress: bool = False) -> Report:
    report = Report("power_cut", {"kills": kills, "seed": seed, "max_delay_s": max_delay, "startup_share": startup_share})
    rng = random.Random(seed)
    broker = Mosquitto(workdir / "broker")
    bus = BusRecorder(broker.port)
    tickets = Tickets()
    lane = SimLane(workdir, GATE, tickets, broker.port, walk=0.03, passage_timeout=1.0)
    relay_moved: dict[str, int] = {}  # ticket key → round
    lost: set[str] = set()  # relay moved, admission not in the ledger after a kill
    counts: collections.Counter[str] = collections.Counter()
    ready_times: list[float] = []
    recheck: str | None = None  # the ticket in flight at the last kill, if its relay moved
    started = time.monotonic()
    try:
        # One clean first start: the lane's new database learns the venue (only itself on the
        # roster here) before any kill; every later start finds its database and its epoch.
        bus.publish_roster([GATE])
        lane.start()
        wait(lambda: bus.holds_roster(GATE), "the lane online, holding the roster")
        lane.stop()
        for round_no in range(1, kills + 1):
            spawned = time.monotonic()
            lane.spawn()
            if rng.random() < startup_share:
                time.sleep(rng.uniform(0.0, 0.8))
                lane.kill()
                counts["killed_during_startup"] += 1
                check_after_kill(lane, relay_moved, lost, report, round_no)
                continue
            lane.wait_ready()
            ready_times.append(time.monotonic() - spawned)
            if recheck is not None:
                reason = reason_of(show(lane, recheck)[0])
                counts[f"recheck_{reason}"] += 1
                if reason != "already_used":
                    report.fail(f"round {round_no}: a ticket whose relay moved before the kill got {reason!r} after the restart")
                recheck = None
            killer = threading.Timer(rng.uniform(0.0, max_delay), lambda: lane.process.send_signal(signal.SIGKILL))  # type: ignore[union-attr]
            killer.start()
            in_flight = None
            while lane.process.poll() is None:  # type: ignore[union-attr]
                ticket = tickets.new()
                in_flight = ticket
                decision, moved = show(lane, ticket)
                reason = reason_of(decision)
                if moved:
                    relay_moved[tickets.key(ticket)] = round_no
                if reason:
                    counts[f"decision_{reason}"] += 1
            killer.join()
            lane.process.wait(10)  # type: ignore[union-attr]
            counts["killed_while_admitting"] += 1
            if in_flight is not None and tickets.key(in_flight) in relay_moved:
                recheck = in_flight
            check_after_kill(lane, relay_moved, lost, report, round_no)
            if progress and round_no % 25 == 0:
                print(f"  {round_no}/{kills} kills, {len(relay_moved)} admissions, {len(report.failures)} failures", flush=True)

        # The last restart: everything recorded reaches the bus.
        lane.start()
        if recheck is not None:
            counts[f"recheck_{reason_of(show(lane, recheck)[0])}"] += 1
        rows = lane.ledger_rows()
        own = {(o, s) for o, s, *_ in rows if o == GATE}
        try:
            wait(lambda: own <= bus.keys(), "every ledger record on the bus", timeout=60)
        except TimeoutError:
            report.fail(f"{len(own - bus.keys())} of {len(own)} ledger records never reached the broker")
        report.figures.update({
            "kills": kills,
            "killed_during_startup": counts["killed_during_startup"],
            "killed_while_admitting": counts["killed_while_admitting"],
            "admissions_relay_moved": len(relay_moved),
            "decisions": {k[len("decision_"):]: v for k, v in sorted(counts.items()) if k.startswith("decision_")},
            "rechecked_after_kill": {k[len("recheck_"):]: v for k, v in sorted(counts.items()) if k.startswith("recheck_")},
            "ledger_records": len(rows),
            "records_on_bus": len(bus.keys() & own),
            "bus_copies_received": bus.copies,
            "seq_clashes_on_bus": len(bus.clashes),
            "integrity_failures": sum("integrity" in f for f in report.failures),
            "records_lost": len(lost),
            "restart_to_ready_s": {"p50": round(percentile(ready_times, 50), 3), "p99": round(percentile(ready_times, 99), 3),
                                   "max": round(max(ready_times, default=0), 3)},
            "duration_s": round(time.monotonic() - started, 1),
        })
        for clash in bus.clashes:
            report.fail(f"seq published for two different records: {clash}")
    finally:
        lane.close()
        bus.close()
        broker.stop()
    return report


def reason_of(decision: dict | None) -> str | None:  # type: ignore[type-arg]
    return None if decision is None else decision["reason"]


def admitted_keys(rows: list[tuple]) -> set[str]:  # type: ignore[type-arg]
    return {key for _o, _s, kind, key, _at in rows if kind == "admission" and key}


def check_after_kill(lane: SimLane, relay_moved: dict[str, int], lost: set[str], report: Report, round_no: int) -> None:
    if not lane.database.exists():
        return  # killed before the ledger was created
    integrity = lane.integrity()
    if integrity != "ok":
        report.fail(f"round {round_no}: integrity_check: {integrity}")
        return
    rows = lane.ledger_rows()
    admitted = admitted_keys(rows)
    for key, when in relay_moved.items():
        if key not in admitted and key not in lost:
            lost.add(key)
            report.fail(f"round {round_no}: relay moved for ticket {key[:12]} (round {when}) but no admission in the ledger")
    seqs = sorted(s for o, s, *_ in rows if o == GATE)
    if seqs != list(range(1, len(seqs) + 1)):
        report.fail(f"round {round_no}: sequence numbers are not 1..{len(seqs)} without gaps")
    per_ticket = collections.Counter(key for _o, _s, kind, key, _at in rows if kind == "admission" and key)
    reverted = collections.Counter(key for _o, _s, kind, key, _at in rows if kind == "revert" and key)
    for key, n in per_ticket.items():
        if n - reverted[key] > 1:
            report.fail(f"round {round_no}: ticket {key[:12]} admitted {n} times")
