"""Broker faults: the broker stopped, killed and restarted, and gates cut off from it (and so from
each other), again and again, while people stream through every lane.

Each gate reaches the broker through its own TCP link that the harness can cut (a partition of
that gate alone). The broker keeps no persistence (``persistence false``), so a broker restart
forgets every queued message: the gates must catch up on their own. Every lane keeps a crowd
going: mostly fresh tickets, and now and then a copy of a ticket already admitted at another
gate (a screenshot passed back).

What must hold:
- every lane keeps deciding through every fault (decisions counted while faults are active);
- a copy shown when no fault has been active for ``SETTLE`` seconds is refused (``already_used``);
  copies let in while gates were cut off are expected and reported as conflicts;
- after the last fault, every gate's ledger converges to the same set of records.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from pathlib import Path

from hwsim.broker import Mosquitto
from hwsim.harness.common import BusRecorder, CuttableLink, Report, SimLane, Tickets, show
from hwsim.timing import percentile, wait

SETTLE = 10.0  # seconds after a fault ends before the venue must act as one again


class FaultClock:
    """When was any fault last active (for judging copies)?"""

    def __init__(self) -> None:
        self.active = 0
        self.last_end = time.monotonic()
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            self.active += 1

    def end(self) -> None:
        with self.lock:
            self.active -= 1
            self.last_end = time.monotonic()

    def settled_since(self, since: float) -> bool:
        """No fault was active at any moment from ``since`` to now, nor within SETTLE before it."""
        with self.lock:
            return self.active == 0 and self.last_end + SETTLE < since


class Crowd(threading.Thread):
    """People at one lane, one after another, until stopped."""

    def __init__(self, lane: SimLane, tickets: Tickets, admitted: list[tuple[str, str]], faults: FaultClock,
                 rng: random.Random, report: Report) -> None:
        super().__init__(name=f"crowd-{lane.name}", daemon=True)
        self.lane, self.tickets, self.admitted, self.faults, self.rng, self.report = lane, tickets, admitted, faults, rng, report
        self.stop_event = threading.Event()
        self.counts: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.during_fault = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            copy = None
            others = [a for a in self.admitted[-200:] if a[0] != self.lane.name]
            if others and self.rng.random() < 0.2:
                copy = self.rng.choice(others)[1]
                ticket = copy
            else:
                ticket = self.tickets.new()
            shown_at = time.monotonic()
            settled = self.faults.settled_since(shown_at)
            with self.faults.lock:
                faulty = self.faults.active > 0
            decision, _moved = show(self.lane, ticket)
            if decision is None:
                self.counts["no_decision"] += 1
                self.report.fail(f"{self.lane.name}: no decision for a scan")
                continue
            self.latencies.append(decision["latency_ms"])
            self.during_fault += faulty
            kind = "copy" if copy else "fresh"
            self.counts[f"{kind}_{decision['reason']}"] += 1
            if decision["accepted"] and not copy:
                self.admitted.append((self.lane.name, ticket))
            if copy and decision["accepted"] and settled and self.faults.settled_since(shown_at):
                self.report.fail(f"{self.lane.name}: a copy got in with no fault for {SETTLE} s before")
            time.sleep(self.rng.uniform(0.02, 0.1))


def run(workdir: Path, faults: int = 60, gates: int = 3, seed: int = 1, progress: bool = False) -> Report:
    report = Report("broker_faults", {"faults": faults, "gates": gates, "seed": seed, "settle_s": SETTLE})
    rng = random.Random(seed)
    broker = Mosquitto(workdir / "broker")
    tickets = Tickets()
    links = [CuttableLink(broker.port) for _ in range(gates)]
    lanes = [SimLane(workdir, f"gate-{i + 1}", tickets, link.port, walk=0.03, passage_timeout=1.0)
             for i, link in enumerate(links)]
    bus = BusRecorder(broker.port)
    clock = FaultClock()
    admitted: list[tuple[str, str]] = []
    crowds: list[Crowd] = []
    injected: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    try:
        for lane in lanes:
            lane.spawn()
        for lane in lanes:
            lane.wait_ready()
        bus.publish_roster([lane.name for lane in lanes])
        wait(lambda: all(bus.status(lane.name).get("state") == "online" and bus.holds_roster(lane.name) for lane in lanes),
             "gates online, holding the roster")
        crowds = [Crowd(lane, tickets, admitted, clock, random.Random(rng.random()), report) for lane in lanes]
        for crowd in crowds:
            crowd.start()
        for number in range(1, faults + 1):
            time.sleep(rng.uniform(0.5, 2.0))
            kind = rng.choice(["broker_stop", "broker_kill", "broker_restart", "partition_one", "partition_some"])
            injected[kind] += 1
            clock.begin()
            try:
                if kind.startswith("broker"):
                    broker.stop(kill=kind == "broker_kill")
                    if kind != "broker_restart":
                        time.sleep(rng.uniform(0.5, 3.0))
                    broker.start()
                    bus.reconnect()
                else:
                    cut = rng.sample(links, 1 if kind == "partition_one" else rng.randint(1, gates - 1 or 1))
                    for link in cut:
                        link.sever()
                    time.sleep(rng.uniform(1.0, 4.0))
                    for link in cut:
                        link.heal()
            finally:
                clock.end()
            if progress and number % 10 == 0:
                print(f"  {number}/{faults} faults, {len(admitted)} admissions, {len(report.failures)} failures", flush=True)
        # A quiet spell with the crowd still going, then the crowd stops and the venue converges.
        time.sleep(SETTLE + 2)
        for crowd in crowds:
            crowd.stop_event.set()
        for crowd in crowds:
            crowd.join(30)
        converge_started = time.monotonic()
        try:
            wait(lambda: len({frozenset(ledger_set(lane)) for lane in lanes}) == 1, "every ledger the same", timeout=120)
            converged_s = round(time.monotonic() - converge_started, 2)
        except TimeoutError:
            converged_s = None
            sizes = {lane.name: len(ledger_set(lane)) for lane in lanes}
            report.fail(f"ledgers did not converge in 120 s: {sizes}")
        totals: collections.Counter[str] = collections.Counter()
        for crowd in crowds:
            totals.update(crowd.counts)
        latencies = [x for crowd in crowds for x in crowd.latencies]
        conflicts = {lane.name: bus.status(lane.name).get("conflicts") for lane in lanes}
        report.figures.update({
            "faults_injected": dict(sorted(injected.items())),
            "decisions": sum(totals.values()),
            "decisions_during_faults": sum(c.during_fault for c in crowds),
            "outcomes": dict(sorted(totals.items())),
            "decision_latency_ms": {"p50": round(percentile(latencies, 50), 2), "p99": round(percentile(latencies, 99), 2),
                                    "max": round(max(latencies, default=0), 2)},
            "ledger_records_per_gate": len(ledger_set(lanes[0])),
            "converged_after_s": converged_s,
            "conflicts_reported": conflicts,
            "seq_clashes_on_bus": len(bus.clashes),
            "records_lost": 0 if converged_s is not None else None,
            "duration_s": round(time.monotonic() - started, 1),
        })
        for clash in bus.clashes:
            report.fail(f"seq published for two different records: {clash}")
        for lane in lanes:
            if lane.process is not None and lane.process.poll() is not None:
                report.fail(f"{lane.name} exited with {lane.process.returncode} during the faults")
    finally:
        for crowd in crowds:
            crowd.stop_event.set()
        for lane in lanes:
            lane.close()
        for link in links:
            link.close()
        bus.close()
        broker.stop()
    return report


def ledger_set(lane: SimLane) -> set[tuple[str, int, str]]:
    return {(o, s, kind) for o, s, kind, _key, _at in lane.ledger_rows()}
