"""Sustained load: ``rate`` scans a second on one lane's serial scanner for ``minutes``, through the
whole loop (pty → serial driver → decision loop → ledger → relay → venue bus), while a peer gate
on the same bus is restarted every ``peer_restart`` seconds (alternately killed and stopped).

The scans are open-loop (sent on a fixed schedule, whether or not the lane keeps up), a mix a
busy entrance sees: fresh tickets (a person queued to walk through), screenshots of tickets
already used, forged tickets and scanner garbage. Figures: every scan got a decision (none
dropped), decision latency (the loop's own, from the line read to the decision) and scan to
decision as the harness sees it, the daemon's RSS sampled over time, and whether the two gates'
ledgers agree at the end.

The timeline puts, for every ``RSS_INTERVAL``, the RSS next to that interval's loop latency p99 and
the share of CPU time the machine lost to its hypervisor (steal) or spent waiting for the disk
(iowait): on a shared virtual machine a slow minute is often the host's, and the report says so.

The disk is measured too, by a thread of the harness's own that has nothing to do with the gate:
every ``DISK_PROBE_INTERVAL`` it writes 4 KiB to a file beside the lanes' and fsyncs it, as the lane
does for each admission and passage. A stall of the lane's loop (decisions that took ``STALL`` or
more) is the disk's when the probe's fsync stalled at the same moment for at least half as long:
the lane's commit waits for the same disk, by design (an admission is durable before the relay
opens). A stall long enough to overflow the line of waiting scans drops scans; the run fails on
dropped scans unless every such stall was the disk's, and says which it was either way.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from gate.formats import gt1
from gate.lane.loop import MAX_WAITING_SCANS
from hwsim.broker import Mosquitto
from hwsim.harness.common import BusRecorder, Report, SimLane, Tickets, show
from hwsim.lane_config import EVENT
from hwsim.timing import percentile, wait

MIX = (("fresh", 0.10), ("used", 0.60), ("forged", 0.15), ("garbage", 0.15))
RSS_INTERVAL = 10.0
DISK_PROBE_INTERVAL = 0.1  # seconds between the probe's write + fsync
STALL = 50.0  # ms: a decision this slow is a stall of the loop


class DiskProbe:
    """Write 4 KiB and fsync, every ``DISK_PROBE_INTERVAL``, on a thread of the harness: the
    disk's own latency, measured beside the lanes (on a virtual machine the host's disk stalls at
    times, and every process waiting on an fsync stalls with it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[float, float]] = []  # (monotonic at the start, fsync ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            block, i = os.urandom(4096), 0
            while not self._stop.wait(DISK_PROBE_INTERVAL):
                os.pwrite(fd, block, (i % 256) * 4096)
                i += 1
                started = time.monotonic()
                os.fsync(fd)
                self.samples.append((started, (time.monotonic() - started) * 1000))
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def stalled_between(self, start: float, end: float) -> bool:
        """Did an fsync overlapping ``start``..``end`` take at least half that long?"""
        least = (end - start) * 1000 / 2
        return any(ms >= least and at <= end and at + ms / 1000 >= start for at, ms in self.samples)


def run(workdir: Path, minutes: float = 10.0, rate: float = 100.0, peer_restart: float = 60.0, seed: int = 1,
        progress: bool = False) -> Report:
    report = Report("load", {"minutes": minutes, "rate_per_s": rate, "peer_restart_s": peer_restart, "seed": seed,
                             "mix": dict(MIX)})
    rng = random.Random(seed)
    broker = Mosquitto(workdir / "broker")
    tickets = Tickets()
    lane = SimLane(workdir, "gate-1", tickets, broker.port, walk=0.03, passage_timeout=1.0)
    peer = SimLane(workdir, "gate-2", tickets, broker.port, walk=0.03, passage_timeout=1.0)
    bus = BusRecorder(broker.port)
    disk = DiskProbe(workdir / "disk-probe.bin")
    forger = SigningKey.generate()
    used: list[str] = []
    sent: collections.deque[tuple[str, float]] = collections.deque()  # (kind, monotonic) awaiting their decision
    sent_count = 0
    decided: collections.Counter[str] = collections.Counter()  # "kind:reason" (paired in order, see consume)
    loop_latency: list[float] = []
    decided_at: list[tuple[float, float]] = []  # (monotonic, loop latency ms) for the timeline
    cpu: list[tuple[float, tuple[int, ...]]] = []  # (monotonic, /proc/stat cpu times)
    end_to_end: list[float] = []
    rss: list[tuple[float, int]] = []
    peer_restarts: collections.Counter[str] = collections.Counter()
    restarters: list[threading.Thread] = []
    lock = threading.Lock()
    done = threading.Event()
    started = time.monotonic()

    def consume() -> None:
        """Decisions come back in the order the scans went out (one serial line, one loop)."""
        control = lane.control
        assert control is not None
        while not done.is_set() or sent:
            for event in control.take(0.5):
                if event["event"] != "decision":
                    continue
                with lock:
                    if not sent:
                        report.fail(f"a decision with no scan sent: {event['reason']}")
                        continue
                    kind, at = sent.popleft()
                decided[f"{kind}:{event['reason']}"] += 1
                loop_latency.append(event["latency_ms"])
                decided_at.append((event["t"], event["latency_ms"]))
                end_to_end.append((event["t"] - at) * 1000)
                if kind == "fresh" and not event["accepted"]:
                    control.send("leave", direction="in")  # the person queued for it gives up
            if done.is_set() and time.monotonic() - finished_at[0] > 30:
                return

    finished_at = [float("inf")]
    try:
        for gate in (lane, peer):
            gate.spawn()
        for gate in (lane, peer):
            gate.wait_ready()
        bus.publish_roster([lane.name, peer.name])
        wait(lambda: all(bus.status(g.name).get("state") == "online" and bus.holds_roster(g.name) for g in (lane, peer)),
             "gates online, holding the roster")
        # Tickets to show again: admitted at the peer, so the lane knows them from the bus.
        for _ in range(50):
            ticket = tickets.new()
            decision, _ = show(peer, ticket)
            if decision and decision["accepted"]:
                used.append(ticket)
        wait(lambda: len([r for r in lane.ledger_rows() if r[0] == "gate-2"]) >= 2 * len(used), "peer's records at the lane")
        consumer = threading.Thread(target=consume, name="load-consumer", daemon=True)
        consumer.start()
        control = lane.control
        assert control is not None
        kinds, weights = zip(*MIX)
        interval = 1.0 / rate
        deadline = started_at = time.monotonic()
        end = started_at + minutes * 60
        next_rss = started_at
        next_restart = started_at + peer_restart
        restart_kill = True
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_rss:
                value = lane.rss_kib()
                if value is not None:
                    rss.append((round(now - started_at, 1), value))
                times = cpu_times()
                if times is not None:
                    cpu.append((now, times))
                next_rss += RSS_INTERVAL
            if now >= next_restart:
                restarter = threading.Thread(target=_restart_peer, args=(peer, restart_kill, peer_restarts), daemon=True)
                restarter.start()
                restarters.append(restarter)
                restart_kill = not restart_kill
                next_restart += peer_restart
            kind = rng.choices(kinds, weights)[0]
            if kind == "fresh":
                text = tickets.new()
                control.send("person", direction="in", walks=True)
            elif kind == "used":
                text = rng.choice(used)
            elif kind == "forged":
                cti = rng.getrandbits(128).to_bytes(16, "big")
                text = gt1.encode_static(gt1.issue(forger, gt1.build_claims(cti=cti, event=EVENT, product="ga")))
            else:
                text = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 300)))
            with lock:
                sent.append((kind, time.monotonic()))
            sent_count += 1
            lane.scanner.scan(text)
            deadline += interval
            pause = deadline - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if progress and sent_count % (int(rate) * 60) == 0:
                print(f"  {sent_count} scans, {sum(decided.values())} decisions, rss {rss[-1][1] if rss else '?'} KiB", flush=True)
        sending_s = time.monotonic() - started_at
        finished_at[0] = time.monotonic()
        done.set()
        consumer.join(60)
        for restarter in restarters:
            restarter.join(60)
        try:
            wait(lambda: ledger_keys(lane) == ledger_keys(peer), "the two ledgers agree", timeout=120)
            agree = True
        except TimeoutError:
            agree = False
            report.fail(f"ledgers differ: lane {len(ledger_keys(lane))}, peer {len(ledger_keys(peer))} records")
        total_decisions = sum(decided.values())
        stalled = stalls(decided_at, disk, MAX_WAITING_SCANS / rate)
        if total_decisions != sent_count and stalled["long_enough_to_drop_not_the_disk"]:
            report.fail(f"{sent_count} scans sent, {total_decisions} decisions: {sent_count - total_decisions} dropped; "
                        f"{stalled['long_enough_to_drop_not_the_disk']} of the loop's stalls that dropped scans were not the disk's")
        if lane.process is None or lane.process.poll() is not None:
            report.fail("the lane exited during the load")
        first_rss = [v for t, v in rss if t >= 60] or [v for _, v in rss]
        report.figures.update({
            "scans_sent": sent_count,
            "decisions": total_decisions,
            "scans_dropped": sent_count - total_decisions,
            "achieved_rate_per_s": round(sent_count / sending_s, 1),
            "outcomes": dict(sorted(decided.items() if total_decisions == sent_count else _by_reason(decided).items())),
            "loop_latency_ms": _spread(loop_latency),
            # (scans and decisions are paired in order: once one scan was dropped, every later pair is off)
            "scan_to_decision_ms": _spread(end_to_end) if total_decisions == sent_count else "not paired: scans were dropped",
            "peer_restarts": dict(peer_restarts),
            "rss_kib": {"samples": rss, "after_1_min": first_rss[0] if first_rss else None,
                        "end": rss[-1][1] if rss else None, "max": max((v for _, v in rss), default=None)},
            "timeline": timeline(started_at, rss, decided_at, cpu, disk.samples),
            "disk_fsync_ms": _spread([ms for _, ms in disk.samples]),
            "stalls": stalled,  # (every scan dropped was dropped in one of those long enough to)
            "ledgers_agree": agree,
            "ledger_records": len(ledger_keys(lane)),
            "duration_s": round(time.monotonic() - started, 1),
        })
    finally:
        done.set()
        disk.close()
        for gate in (lane, peer):
            gate.close()
        bus.close()
        broker.stop()
    return report


def _restart_peer(peer: SimLane, kill: bool, counts: collections.Counter[str]) -> None:
    if kill:
        peer.kill()
    else:
        peer.stop()
    counts["killed" if kill else "stopped"] += 1
    peer.start()


def _by_reason(decided: collections.Counter[str]) -> collections.Counter[str]:
    """The outcomes by reason alone ("kind:reason" counts summed over the kinds)."""
    reasons: collections.Counter[str] = collections.Counter()
    for key, n in decided.items():
        reasons[key.split(":", 1)[1]] += n
    return reasons


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
            "p999": round(percentile(values, 99.9), 2), "max": round(max(values, default=0), 2), "n": len(values)}


def cpu_times() -> tuple[int, ...] | None:
    """The machine's CPU times (user nice system idle iowait irq softirq steal), or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return tuple(int(v) for v in fields[1:9]) if fields[:1] == ["cpu"] and len(fields) >= 9 else None


def stalls(decided_at: list[tuple[float, float]], disk: DiskProbe, hold_s: float) -> dict[str, Any]:
    """The loop's stalls (decisions of ``STALL`` ms or more; the scans that waited behind one
    are the same stall), those the disk stalled beside, and those long enough to drop scans
    (``hold_s``: what the line of waiting scans holds at the harness's rate)."""
    windows: list[tuple[float, float]] = []
    for at, ms in sorted(decided_at):
        if ms >= STALL:
            start = at - ms / 1000
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(windows[-1][1], at))
            else:
                windows.append((start, at))
    disks = [disk.stalled_between(s, e) for s, e in windows]
    long_ones = [(e - s, d) for (s, e), d in zip(windows, disks) if e - s >= hold_s]
    return {"stalls": len(windows), "disk_stalled_beside": sum(disks),
            "longest_ms": round(max((e - s for s, e in windows), default=0) * 1000, 1),
            "long_enough_to_drop": len(long_ones), "long_enough_to_drop_not_the_disk": sum(not d for _, d in long_ones)}


def timeline(started_at: float, rss: list[tuple[float, int]], decided_at: list[tuple[float, float]],
             cpu: list[tuple[float, tuple[int, ...]]], fsyncs: list[tuple[float, float]]) -> list[dict[str, float | int | None]]:
    """One row per sampling interval: RSS, loop latency p99, CPU steal and iowait, and the disk
    probe's slowest fsync in that interval."""
    rows: list[dict[str, float | int | None]] = []
    for (start, before), (end, after) in zip(cpu, cpu[1:]):
        spent = [b - a for a, b in zip(before, after)]
        total = sum(spent) or 1
        latencies = [ms for at, ms in decided_at if start <= at < end]
        fsync = [ms for at, ms in fsyncs if start <= at < end]
        offset = round(start - started_at, 1)
        rows.append({
            "t": offset,
            "rss_kib": next((v for t, v in rss if t == offset), None),
            "decisions": len(latencies),
            "loop_p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
            "steal_pct": round(100 * spent[7] / total, 1),
            "iowait_pct": round(100 * spent[4] / total, 1),
            "fsync_max_ms": round(max(fsync), 1) if fsync else None,
        })
    return rows


def ledger_keys(lane: SimLane) -> set[tuple[str, int]]:
    return {(o, s) for o, s, *_ in lane.ledger_rows()}
