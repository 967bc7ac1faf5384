"""Venue benchmarks (issue 22): ``scripts/bench --venue`` writes the "Venue" section of BENCHMARKS.md.

Everything runs as at a venue: real ``gate run`` processes (``bench.start_daemon``) on a real
mosquitto with the shipped config's queue limits, simulated hardware at each lane, and simulated
peers that sign their ledger records with their roster keys exactly as a real gate seals them.

- one lane among 99 simulated peers publishing 100, 300 and 1,000 records/s: its scan → relay
  latency, its CPU, and whether its ledger holds every peer record;
- 10 lanes: an admission at one lane → merged at each of the 9 others;
- catch-up: a lane stopped while 100,000 records are made, then started again;
- an emptied lane (a new SD card) recovering its own past from a peer;
- ``Ledger.merge`` with ``open_record`` in-process, beside bare Ed25519 verification.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import re
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from contextlib import closing
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from nacl.signing import SigningKey

from bench import ROOT, TOPIC_ROOT, VENUE, Lanes, admit, log_tail, machine, merged_record, peak_rss_mb, percentile, ticket
from hwsim.broker import Mosquitto
from hwsim.venue_keys import VenueKeys

from gate.store import Store
from gate.store.ledger import ADMISSION, Record
from gate.sync.messages import Request, encode_records, encode_request
from gate.trust.records import sealer

PEERS = tuple(f"peer-{i:02d}" for i in range(1, 100))
RATES = (100, 300, 1000)  # venue records per second, over all the peers
SECTION = "## Venue"
SHIPPED_BROKER = ROOT / "config" / "mosquitto" / "mosquitto.conf"
Stream = tuple[str, str]  # (origin, epoch)


# --- the broker and the simulated peers ----------------------------------------------------------


def venue_broker(workdir: Path) -> Mosquitto:
    """A mosquitto with the shipped venue config's queue limits (``max_queued_messages``: what
    the broker keeps for a gate that is away; ``max_inflight_messages``; the message size).
    hwsim's broker leaves mosquitto's defaults, which drop a persistent session's messages
    beyond the 1,000th."""
    broker = Mosquitto(workdir)
    limits = [line for line in SHIPPED_BROKER.read_text().splitlines()
              if line.split(" ", 1)[0] in ("max_queued_messages", "max_inflight_messages", "message_size_limit")]
    broker.stop()
    with broker.conf.open("a") as conf:
        conf.write("\n".join([*limits, "log_type notice"]) + "\n")  # notice: a session's dropped messages
    broker.start()
    return broker


def broker_drops(broker: Mosquitto) -> list[str]:
    """What mosquitto said about messages it dropped (a session's queue full)."""
    log = (broker.workdir / "mosquitto.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "dropped" in line.lower()]


NUMBERS = re.compile(r"[0-9]+(\.[0-9]+)?")


def notable(lanes: Lanes) -> Counter[str]:
    """The warnings and errors every process of ``lanes`` logged, counted by their text with the
    time and numbers taken out, each under its lane's name."""
    counts: Counter[str] = Counter()
    for gate, daemon in lanes.processes:
        for raw in daemon.log_notable:  # type: ignore[attr-defined]
            line = raw.decode(errors="replace").strip().split(" ", 2)[-1]  # without the date and time
            counts[f"{gate}: " + NUMBERS.sub("#", line)[:160]] += 1
    return counts


class PeerStreams:
    """Simulated peers' ledger records, sealed with their roster keys as a real gate seals its
    own (``gate.trust.records.sealer``): admissions of fresh tickets, each peer's numbered 1, 2,
    3… in one epoch of its own. The peers take turns, one message each."""

    def __init__(self, keys: VenueKeys, peers: Sequence[str]) -> None:
        self.seals = {peer: sealer(keys.add(peer), VENUE) for peer in peers}
        self.epochs = {peer: secrets.token_hex(8) for peer in peers}
        self.tops = dict.fromkeys(peers, 0)
        self._turn: Iterator[str] = itertools.cycle(peers)

    def sealed(self, peer: str) -> tuple[str, bytes]:
        self.tops[peer] += 1
        record = Record(peer, self.tops[peer], ADMISSION, time.time(), ticket_key=secrets.token_hex(32), format="gt1",
                        direction="in", details={"known": 0, "limit": 1}, epoch=self.epochs[peer])
        return self.seals[peer](record)

    def message(self, records: int = 1) -> tuple[str, bytes]:
        """The next peer's next ``records`` records as one ledger message: (topic, payload)."""
        peer = next(self._turn)
        return f"{TOPIC_ROOT}ledger/{peer}", encode_records(peer, [self.sealed(peer) for _ in range(records)])

    def published(self) -> dict[Stream, int]:
        """Each stream's top seq: what a gate holding all of them has."""
        return {(peer, self.epochs[peer]): top for peer, top in self.tops.items() if top}


def held(database: Path, gate: str, streams: dict[Stream, int]) -> int:
    """How many of ``streams``' records ``gate``'s database holds (merge keeps each stream
    without gaps, so its top seq is its count); 0 while the file cannot be read."""
    try:  # one index lookup a stream: the bench polls this while the lane works, and must not take a core from it
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as conn:
            return sum(min(top, conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger WHERE origin = ? AND epoch = ?",
                                             stream).fetchone()[0]) for stream, top in streams.items())
    except sqlite3.Error:
        return 0


def _publisher(port: int, peers: Sequence[str], conn: Connection) -> None:
    """The simulated peers, in a process of their own (``PeerPublisher``): one MQTT client
    publishes every peer's records on that peer's ledger topic, QoS 1 as gates do. (The bench's
    broker has no ACL; at a venue each gate would have its own connection.)"""
    import paho.mqtt.client as mqtt

    streams = PeerStreams(VenueKeys(VENUE, list(peers)), peers)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-peers-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *args: acked.release()
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("the peers' publisher did not connect")
    sent = 0

    def settle() -> None:
        """Until the broker has acknowledged every message sent."""
        nonlocal sent
        for _ in range(sent):
            if not acked.acquire(timeout=60):
                raise RuntimeError("the broker did not acknowledge the peers' messages")
        sent = 0

    conn.send("ready")
    command = conn.recv()
    while command[0] != "close":
        if command[0] == "rate":  # until the next command: paced, one record per message
            rate, records, started = command[1], 0, time.monotonic()
            while not conn.poll(0):
                due = int((time.monotonic() - started) * rate) - records
                for _ in range(max(0, due)):
                    client.publish(*streams.message(), qos=1)
                    records += 1
                    sent += 1
                time.sleep(min(0.01, max(0.0, (records + 1) / rate - (time.monotonic() - started))))
            elapsed = time.monotonic() - started
            settle()
            conn.recv()  # "pause"
            conn.send({"streams": streams.published(), "records": records, "seconds": elapsed})
        elif command[0] == "burst":  # as fast as the broker takes them
            total, per_message = command[1], command[2]
            started = time.monotonic()
            for first in range(0, total, per_message):
                client.publish(*streams.message(min(per_message, total - first)), qos=1)
                sent += 1
            settle()
            conn.send({"streams": streams.published(), "records": total, "seconds": time.monotonic() - started})
        command = conn.recv()
    client.disconnect()
    client.loop_stop()


class PeerPublisher:
    """``_publisher`` in a process of its own: its signing, JSON and paho work must not hold the
    GIL while the bench's main thread times a scan."""

    def __init__(self, port: int, peers: Sequence[str] = PEERS) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_publisher, args=(port, list(peers), child), daemon=True)
        self.process.start()
        if self._answer(60) != "ready":
            raise RuntimeError("the peers' publisher did not start")

    def _answer(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError("the peers' publisher did not answer")
        return self.conn.recv()

    def rate(self, per_second: float) -> None:
        """Publish at ``per_second`` records/s (one record per message) until ``pause``."""
        self.conn.send(("rate", per_second))

    def pause(self) -> dict[str, Any]:
        """Stop publishing; once the broker has every message: what was published
        (``streams``: each stream's top seq; ``records`` and ``seconds`` of this rate)."""
        self.conn.send(("pause",))
        return self._answer(120)

    def burst(self, total: int, per_message: int) -> dict[str, Any]:
        """Publish ``total`` records, ``per_message`` in each message, as fast as the broker
        takes them; returns as ``pause`` does."""
        self.conn.send(("burst", total, per_message))
        return self._answer(600)

    def __enter__(self) -> "PeerPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send(("close",))
        except OSError:
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_held(database: Path, gate: str, streams: dict[Stream, int], timeout: float,
              started: float | None = None) -> tuple[float, int, float]:
    """Until ``gate`` holds every record of ``streams``: (seconds waited, records held then,
    seconds until it held 99 % of them), counted from ``started`` (``time.monotonic()``; now
    when None)."""
    started = time.monotonic() if started is None else started
    expected, most = sum(streams.values()), float("nan")
    while True:
        count = held(database, gate, streams)
        if most != most and count >= 0.99 * expected:  # NaN: not reached before
            most = time.monotonic() - started
        if count >= expected or time.monotonic() - started > timeout:
            return time.monotonic() - started, count, most
        time.sleep(0.1)


# --- (a) one lane among 99 simulated peers ----------------------------------------------------------


def bench_lane_among_peers(workdir: Path, issuer: SigningKey, scans: int, rates: Sequence[int] = RATES,
                           drain_timeout: float = 180.0) -> dict[str, Any]:
    """gate-a, a real ``gate run``, scans tickets while the 99 simulated peers publish records
    at each rate. Per rate: gate-a's scan → relay (``bench.admit``), its CPU over the scans
    (% of one core), the peers' records published → merged at gate-a (the record's ``at`` and
    its ``peer_records`` event's ``t``, both clocks of this host), and after the peers stop: how
    long until gate-a holds every record published so far, and how many it holds.

    gate-a's database is new and its 99 peers answer no catch-up request, so it decides at
    once (``recovery = "admit"``, ``recovery_wait = 0``, as the tests' lanes do).
    """
    broker = venue_broker(workdir / "broker")
    wall_offset = time.time() - time.monotonic()
    results = []
    with Lanes(workdir, issuer, ["gate-a"], broker=broker, roster_extra=PEERS,
               sync={"recovery": "admit", "recovery_wait": 0.0}) as venue, PeerPublisher(broker.port) as peers:
        lane, scanner, daemon = venue.lanes["gate-a"], venue.scanners["gate-a"], venue.daemons["gate-a"]
        serial = 3 * 10**6
        for rate in rates:
            mark = lane.mark()
            peers.rate(rate)
            lane.wait_for(lambda e: e["event"] == "peer_records", start=mark, timeout=30)  # they are arriving
            cpu, started = cpu_seconds(daemon.pid), time.monotonic()
            latencies = []
            for _ in range(scans):
                serial += 1
                latencies.append(admit(lane, scanner, ticket(issuer, serial), timeout=60)[0])
            cpu = (cpu_seconds(daemon.pid) - cpu) / (time.monotonic() - started) * 100
            published = peers.pause()
            drain, count, _ = wait_held(venue.database("gate-a"), "gate-a", published["streams"], drain_timeout)
            lags = [(e["t"] + wall_offset - r["at"]) * 1000 for e in lane.events[mark:] if e["event"] == "peer_records"
                    for r in e["records"]]
            results.append({
                "rate": rate, "actual": published["records"] / published["seconds"], "scans": len(latencies),
                "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies), "cpu": cpu,
                "lag_p50": percentile(lags, 50), "lag_p99": percentile(lags, 99), "lag_max": max(lags, default=float("nan")),
                "published": sum(published["streams"].values()), "held": count, "drain": drain,
            })
            print(f"  {rate:>5} records/s: {results[-1]}", flush=True)
        assert daemon.poll() is None, f"gate-a exited with {daemon.returncode}"
    return {"rates": results, "exit": venue.exit_codes["gate-a"][-1], "warnings": notable(venue)}


# --- (b) ten lanes -----------------------------------------------------------------------------------


def bench_ten_lanes(workdir: Path, issuer: SigningKey, scans: int, count: int = 10) -> dict[str, Any]:
    """``count`` real lanes on one broker, a new venue (each lane learns that the others' databases
    are new too before it admits: ``recovery = "wait"``, the default). Tickets are scanned at
    each lane in turn, ``scans`` at each; for every admission, its ``record`` event at lane X →
    its ``peer_records`` event at each other lane Y (both CLOCK_MONOTONIC) gives pair X → Y."""
    names = [f"lane-{i:02d}" for i in range(1, count + 1)]
    pairs: dict[tuple[str, str], list[float]] = {(x, y): [] for x in names for y in names if x != y}
    started = time.monotonic()
    with Lanes(workdir, issuer, names, broker=venue_broker(workdir / "broker"), ready_timeout=120) as venue:
        ready = time.monotonic() - started
        serial = 4 * 10**6
        for _ in range(scans):
            for x in names:
                serial += 1
                marks = {y: venue.lanes[y].mark() for y in names}
                admit(venue.lanes[x], venue.scanners[x], ticket(issuer, serial))
                admission = venue.lanes[x].wait_for(lambda e: e["event"] == "record" and e["kind"] == "admission", start=marks[x])
                for y in names:
                    if y != x:
                        merged = venue.lanes[y].wait_for(lambda e: merged_record(e, x, admission["seq"]), start=marks[y],
                                                         timeout=30)
                        pairs[(x, y)].append((merged["t"] - admission["t"]) * 1000)
        assert venue.watcher is not None
        refused = sum(venue.watcher.last_json(f"{TOPIC_ROOT}gates/{g}/status").get("sync", {}).get("refused", 0) for g in names)
    pair_p99 = [percentile(times, 99) for times in pairs.values()]
    every = [t for times in pairs.values() for t in times]
    worst = max(pairs, key=lambda pair: percentile(pairs[pair], 99))
    return {"lanes": count, "scans": scans, "ready": ready, "pairs": len(pairs), "per_pair": scans,
            "worst_p99": max(pair_p99), "worst_pair": worst, "median_p99": statistics.median(pair_p99),
            "p50": percentile(every, 50), "p99": percentile(every, 99), "max": max(every), "n": len(every),
            "exits": sorted({c for codes in venue.exit_codes.values() for c in codes}),
            "refused": refused, "warnings": notable(venue)}


# --- (c) catch-up of records missed while away ----------------------------------------------------


BURST_CHUNK = 500  # records the catch-up scenario publishes before it waits for lane-p to hold them


def bench_catch_up(workdir: Path, issuer: SigningKey, missed: int) -> dict[str, Any]:
    """lane-l is stopped (SIGTERM); while it is away the 99 simulated peers publish ``missed``
    records, one per message as gates publish them, as fast as lane-p (a real lane, online all
    along) merges them: ``BURST_CHUNK`` records, then until lane-p holds them, and so on. (Faster
    than an online gate takes them in, the broker's queue for it overflows and drops records that
    the simulated peers, unlike gates, never give again.) The broker keeps lane-l's messages in its persistent session (up to the shipped
    config's ``max_queued_messages``), and lane-l asks lane-p for what it lacks when it connects:
    both paths a real venue gives a lane that comes back. lane-l is started again: spawn →
    READY (NOTIFY_SOCKET), spawn → its database holds all ``missed``, its peak RSS, and whether
    it is still running (then its exit code on SIGTERM)."""
    broker = venue_broker(workdir / "broker")
    out: dict[str, Any] = {"missed": missed}
    with Lanes(workdir, issuer, ["lane-l", "lane-p"], broker=broker, roster_extra=PEERS,
               sync={"recovery": "admit", "recovery_wait": 0.0}) as venue, PeerPublisher(broker.port) as peers:
        out["stop_exit"] = venue.stop("lane-l")
        began = time.monotonic()
        for first in range(0, missed, BURST_CHUNK):
            published = peers.burst(min(BURST_CHUNK, missed - first), 1)
            _, out["p_held"], _ = wait_held(venue.database("lane-p"), "lane-p", published["streams"], 120)
        out["publish_s"] = out["p_merge_s"] = time.monotonic() - began  # lane-p merged them as they came
        out["p_rss_mb"] = peak_rss_mb(venue.daemons["lane-p"].pid)

        notify = workdir / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # open until the lane stops, as systemd's
            sock.bind(str(notify))
            sock.settimeout(60)
            restarted, started = time.time(), time.monotonic()
            daemon = venue.start("lane-l", notify=str(notify))
            try:
                while b"READY=1" not in sock.recv(4096):
                    pass
                out["ready_s"] = time.monotonic() - started
            except socket.timeout:
                out["ready_s"] = float("nan")
            out["waited_s"], out["held"], out["most_s"] = wait_held(venue.database("lane-l"), "lane-l",
                                                                    published["streams"], 300, started)
            out["caught_up_s"] = out["waited_s"] if out["held"] >= missed else float("nan")
            out["l_sync"] = next_status(venue, "lane-l").get("sync", {})
            out["alive"] = daemon.poll() is None
            out["rss_mb"] = peak_rss_mb(daemon.pid) if out["alive"] else float("nan")
            if not out["alive"] or out["held"] < missed:
                sys.stderr.write(f"--- lane-l's log, last lines ---\n{log_tail(daemon, 60)}")
            out["exit"] = venue.stop("lane-l")
        out["answers"] = [(logged_at(line) - restarted, int(line.rsplit("records=", 1)[1].split()[0]))
                          for line in log_tail(venue.daemons["lane-p"]).splitlines()
                          if "catch-up answer for lane-l" in line and logged_at(line) >= restarted]
    out["broker_dropped"] = broker_drops(broker)
    out["warnings"] = notable(venue)
    return out


def next_status(lanes: Lanes, gate: str, timeout: float = 10.0) -> dict[str, Any]:
    """The status ``gate`` publishes next (every ``status_interval``, 1 s here): its counters as
    of now, not as of its last status."""
    assert lanes.watcher is not None
    topic = f"{TOPIC_ROOT}gates/{gate}/status"
    seen, deadline = len(lanes.watcher.on(topic)), time.monotonic() + timeout
    while len(lanes.watcher.on(topic)) == seen and time.monotonic() < deadline:
        time.sleep(0.05)
    return lanes.watcher.last_json(topic)


def logged_at(line: str) -> float:
    """The unix time of a gate's log line (``gate.field.logsetup``: local time, milliseconds)."""
    return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000


# --- (d) an emptied lane recovers its past ----------------------------------------------------------


def bench_recovery(workdir: Path, issuer: SigningKey, admissions: int) -> dict[str, Any]:
    """lane-a and lane-b, a new venue. ``admissions`` records are appended to lane-a's ledger,
    sealed with lane-a's key, while it runs (its outbox publishes them and lane-b merges them;
    through the scanner they would take minutes). lane-a is stopped, its database files deleted
    (a new SD card) and lane-a started again: spawn → its retained status says online and
    ``recovering`` null, and spawn → its database holds its old records again."""
    out: dict[str, Any] = {"admissions": admissions}
    with Lanes(workdir, issuer, ["lane-a", "lane-b"], broker=venue_broker(workdir / "broker")) as venue:
        assert venue.watcher is not None
        with closing(Store(venue.database("lane-a"), "lane-a", seal=sealer(venue.keys.add("lane-a"), VENUE))) as store:
            for _ in range(admissions):
                store.ledger.append(ADMISSION, time.time(), ticket_key=secrets.token_hex(32), format="gt1", direction="in",
                                    details={"known": 0, "limit": 1})
            old = {("lane-a", store.epoch): store.ledger.last_seq()}
        out["b_merge_s"], _, _ = wait_held(venue.database("lane-b"), "lane-b", old, 300)
        assert held(venue.database("lane-b"), "lane-b", old) == sum(old.values()), "lane-b did not get lane-a's records"
        out["stop_exit"] = venue.stop("lane-a")
        for suffix in ("", "-wal", "-shm"):
            Path(str(venue.database("lane-a")) + suffix).unlink(missing_ok=True)
        topic = f"{TOPIC_ROOT}gates/lane-a/status"
        seen = len(venue.watcher.on(topic))
        started = time.monotonic()
        venue.start("lane-a")
        statuses: list[dict[str, Any]] = []
        status_at = held_at = None
        while status_at is None or held_at is None:
            assert time.monotonic() - started < 300, f"lane-a not recovered: {statuses[-1:] or 'no status'}"
            assert venue.daemons["lane-a"].poll() is None, f"lane-a exited with {venue.daemons['lane-a'].returncode}"
            new = [json.loads(m) for m in venue.watcher.on(topic)[seen:]]
            statuses += new
            seen += len(new)
            if status_at is None and any(s.get("state") == "online" and s.get("recovering") is None for s in new):
                status_at = time.monotonic() - started
            if held_at is None and held(venue.database("lane-a"), "lane-a", old) == sum(old.values()):
                held_at = time.monotonic() - started
            time.sleep(0.02)
        out["status_s"], out["held_s"] = status_at, held_at
        out["recovering_seen"] = sum(1 for s in statuses if s.get("recovering"))
        out["exit"] = venue.stop("lane-a")
    out["warnings"] = notable(venue)
    return out


# --- Ledger.merge in-process -----------------------------------------------------------------------


# --- (e) a flood of catch-up requests -----------------------------------------------------------------


def bench_request_flood(workdir: Path, issuer: SigningKey, scans: int, held_records: int, rate: float = 50.0) -> dict[str, Any]:
    """gate-a holds ``held_records`` peer records; one credential (a simulated peer's, as a
    stolen gate's would be) asks gate-a for everything it holds ``rate`` times a second, all the
    while gate-a scans tickets: its scan → relay, and how many answers it sent (it answers one
    asker at most once a second, on a topic only that asker reads)."""
    broker = venue_broker(workdir / "broker")
    with Lanes(workdir, issuer, ["gate-a"], broker=broker, roster_extra=PEERS,
               sync={"recovery": "admit", "recovery_wait": 0.0}) as venue, PeerPublisher(broker.port) as peers:
        lane, scanner, daemon = venue.lanes["gate-a"], venue.scanners["gate-a"], venue.daemons["gate-a"]
        for first in range(0, held_records, BURST_CHUNK):
            published = peers.burst(min(BURST_CHUNK, held_records - first), 1)
            wait_held(venue.database("gate-a"), "gate-a", published["streams"], 120)
        asker = PEERS[0]
        request = encode_request(Request("gate-a", {}, all=True))
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            assert venue.watcher is not None
            started = time.monotonic()
            while not stop.is_set():
                venue.watcher.publish(f"{TOPIC_ROOT}sync/request/{asker}", request)
                sent[0] += 1
                stop.wait(max(0.0, started + sent[0] / rate - time.monotonic()))

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        try:
            latencies = [admit(lane, scanner, ticket(issuer, 5 * 10**6 + i), timeout=60)[0] for i in range(scans)]
        finally:
            stop.set()
            thread.join(5)
        answers = sum(1 for line in log_tail(daemon).splitlines() if f"catch-up answer for {asker}" in line)
        assert daemon.poll() is None, f"gate-a exited with {daemon.returncode}"
    return {"requests": sent[0], "answers": answers, "held": held_records, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "max": max(latencies)}


def flood_rows(e: dict[str, Any], rate: float = 50.0) -> list[str]:
    what = f"catch-up requests at {rate:.0f}/s from one credential while the lane scans"
    if "failed" in e:
        return failed(e, what, "scan → relay p99 < 10 ms")
    return [f"| {what} ({e['requests']:,} requests, {e['answers']} answers of {e['held']:,} records each): scan → relay "
            f"p50 / p99 / max | {e['p50']:.2f} / {e['p99']:.2f} / {e['max']:.1f} ms | p99 < 10 ms | {verdict(e['p99'] < 10)} |"]


def bench_merge(workdir: Path, count: int, rounds: int = 5) -> dict[str, float]:
    """Signed peer records taken in per second on one core, as a gate takes in a ledger message:
    ``decode_records``, ``open_record`` against the roster, then ``Ledger.merge`` (one SQLite
    transaction, durable) — for messages of 500 records (a catch-up answer, an outbox after an
    outage) and of one record (a live venue's messages). Bare Ed25519 verification of a record's
    size is timed in the same rounds, interleaved, as the ceiling; each keeps its best round
    (``bench.bench_gt1`` says why)."""
    from gate.store import RosterRow
    from gate.sync.messages import decode_records
    from gate.trust.records import open_record
    from gate.trust.roster import Roster

    keys = VenueKeys(VENUE, list(PEERS))
    streams, single_streams = PeerStreams(keys, PEERS), PeerStreams(keys, PEERS)  # epochs of their own: no gaps
    roster = Roster(RosterRow(p, bytes(keys.add(p).verify_key), None, ("in", "out"), False) for p in PEERS)
    per_round, single = max(500, count // rounds), max(100, count // rounds // 10)
    batches = [[streams.message(500) for _ in range(per_round // 500)] for _ in range(rounds)]
    singles = [[single_streams.message(1) for _ in range(single)] for _ in range(rounds)]
    text, signature = streams.sealed(PEERS[0])
    signed = signature + b"gate/v2 record\n" + text.encode()
    key = keys.add(PEERS[0]).verify_key
    store = Store(workdir / "merge.db", "bench")
    best = {"batch": 0.0, "single": 0.0, "ceiling": 0.0}
    try:
        for r in range(rounds):
            for name, messages in (("batch", batches[r]), ("single", singles[r])):
                taken = 0
                start = time.perf_counter()
                for topic, payload in messages:
                    sender = topic.rsplit("/", 1)[1]
                    records = [open_record(t, s, roster, VENUE, sender) for t, s in decode_records(payload, sender)]
                    taken += len(store.ledger.merge(records, time.time()).added)
                best[name] = max(best[name], taken / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(per_round):
                key.verify(signed)
            best["ceiling"] = max(best["ceiling"], per_round / (time.perf_counter() - start))
        assert store.ledger.count() == rounds * (per_round // 500 * 500 + single), "records were not all merged"
    finally:
        store.close()
    return {**best, "per_round": per_round // 500 * 500, "single_per_round": single, "rounds": rounds}


# --- BENCHMARKS.md ---------------------------------------------------------------------------------


def section_of(document: str, heading: str = SECTION) -> str:
    """The section ``heading`` (the venue's unless named) of ``document`` ('' when it has none):
    its heading up to the next ``## `` heading or the end."""
    found = re.search(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", document, re.M | re.S)
    return found.group(0) if found else ""


def with_section(document: str, section: str, heading: str = SECTION) -> str:
    """``document`` with its section ``heading`` replaced by ``section``, or ``section`` appended."""
    old = section_of(document, heading)
    if old:
        before, after = document.split(old, 1)
        return before + section + ("\n" + after if after else "")
    return document.rstrip("\n") + "\n\n" + section if document.strip() else section


def write_section(out: Path, section: str, heading: str = SECTION) -> None:
    """Put ``section`` into the file ``out`` in place of its old one (the others kept), and print it."""
    out.write_text(with_section(out.read_text() if out.exists() else "", section, heading))
    print(section)


def verdict(ok: bool) -> str:
    return "within budget" if ok else "**over budget**"


def failed(result: dict[str, Any], what: str, budget: str) -> list[str]:
    """The row of a scenario that did not run through ([] when it did)."""
    return [f"| {what} | **failed**: {result['failed']} | {budget} | **not measured** |"] if "failed" in result else []


def among_rows(a: dict[str, Any]) -> list[str]:
    what = "one lane among 99 simulated peers publishing 100, 300 and 1,000 records/s"
    if "failed" in a:
        return failed(a, what, "p99 ≤ 10 ms at 1,000/s")
    rows = []
    for r in a["rates"]:
        budgeted = r["rate"] == max(RATES)
        rows += [
            f"| one lane among 99 simulated peers publishing {r['rate']:,} records/s (one per message; {r['actual']:,.0f}/s "
            f"measured): scanner line → relay energized, `gate run` ({r['scans']} admissions) | p50 {r['p50']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, max {r['max']:.2f} ms | " + (f"p99 ≤ 10 ms | {verdict(r['p99'] <= 10)} |" if budgeted else "— | |"),
            f"| of which: the lane's CPU; a peer record published → merged at the lane; its ledger after the peers "
            f"stopped | {r['cpu']:.0f} % of one core; p50 {r['lag_p50']:.1f} ms, p99 {r['lag_p99']:.1f} ms, max "
            f"{r['lag_max']:.1f} ms; holds {r['held']:,} of {r['published']:,} published ({r['drain']:.2f} s after they "
            f"stopped) | all held | {verdict(r['held'] == r['published'])} |",
        ]
    return rows + [f"| of which: the lane's exit code on SIGTERM after the last rate | {a['exit']} | 0 | {verdict(a['exit'] == 0)} |"]


def lanes_rows(b: dict[str, Any]) -> list[str]:
    if "failed" in b:
        return failed(b, "10 lanes, one mosquitto: admission at lane X → merged at lane Y", "p99 ≤ 50 ms on every pair")
    return [
        f"| {b['lanes']} lanes, one mosquitto: admission at lane X → merged at lane Y, every pair ({b['pairs']} pairs, "
        f"{b['per_pair']} admissions each: a pair's p99 is near its max) | worst pair's p99 {b['worst_p99']:.2f} ms "
        f"({' → '.join(b['worst_pair'])}), median pair's p99 {b['median_p99']:.2f} ms; all {b['n']:,}: p50 "
        f"{b['p50']:.2f} ms, p99 {b['p99']:.2f} ms, max {b['max']:.2f} ms | p99 ≤ 50 ms on every pair | "
        f"{verdict(b['worst_p99'] <= 50)} |",
        f"| of which: a new venue of {b['lanes']} lanes started → all online, holding the roster, done recovering; "
        f"peer records refused (their statuses); the lanes' exit codes on SIGTERM | {b['ready']:.1f} s; {b['refused']}; "
        f"{', '.join(map(str, b['exits']))} | — | |",
    ]


def catch_up_rows(c: dict[str, Any], missed: int) -> list[str]:
    what = (f"catch-up: a lane stopped while 99 simulated peers publish {missed:,} records (one per message: the broker "
            f"queues the first of them in its persistent session), started again")
    if "failed" in c:
        return failed(c, what, "READY ≤ 2 s, caught up ≤ 15 s, no crash")
    answers = ", ".join(f"{records:,} at +{at:.1f} s" for at, records in c["answers"][:4]) or "none"
    if len(c["answers"]) > 4:
        answers += f" and {len(c['answers']) - 4} more"
    duplicates = f"{c['l_sync']['duplicates']:,}" if "duplicates" in c["l_sync"] else "no status"
    return [
        f"| {what}: spawn → READY | {c['ready_s']:.2f} s | ≤ 2 s | {verdict(c['ready_s'] <= 2)} |",
        f"| of which: spawn → its database holds all {missed:,} (and 99 % of them) | "
        + (f"{c['caught_up_s']:.1f} s" if c["held"] >= missed else f"**not caught up**: {c['held']:,} after {c['waited_s']:.0f} s")
        + f" ({c['most_s']:.1f} s) | ≤ 15 s | {verdict(c['caught_up_s'] <= 15)} |",
        f"| of which: its peak RSS (VmHWM); still running, then its exit code on SIGTERM | {c['rss_mb']:.0f} MB; "
        f"{'running' if c['alive'] else '**exited**'}, exit {c['exit']} | no crash | {verdict(c['alive'] and c['exit'] == 0)} |",
        f"| of which: the online peer lane's answers to its catch-up requests (records, time after spawn); whether the "
        f"broker dropped messages of its session (queue full); duplicates it dropped | {answers}; "
        f"{'dropped' if c['broker_dropped'] else 'none dropped'}; {duplicates} | — | |",
        f"| meanwhile: that peer lane, online, merging the {missed:,} single-record messages as fast as they came "
        f"(published in {c['publish_s']:.1f} s) | all held after {c['p_merge_s']:.1f} s ({missed / c['p_merge_s']:,.0f} "
        f"records/s), peak RSS {c['p_rss_mb']:.0f} MB | — | |",
    ]


def recovery_rows(d: dict[str, Any], lost: int) -> list[str]:
    what = (f"emptied lane: {lost:,} admissions at lane A, A stopped, its gate.db, -wal, -shm deleted, started again: "
            f"spawn → its status says `recovering` null")
    if "failed" in d:
        return failed(d, what, "—")
    return [
        f"| {what} | {d['status_s']:.2f} s | — | |",
        f"| of which: spawn → its database holds its {lost:,} old records again | {d['held_s']:.2f} s | — | |",
    ]


def merge_rows(m: dict[str, Any]) -> list[str]:
    what = "peer records taken in, one core: `decode_records` + `open_record` + `Ledger.merge` (one durable transaction)"
    if "failed" in m:
        return failed(m, what, "≥ 5,000 / s")
    return [
        f"| {what}, messages of 500 (best of {m['rounds']} rounds of {m['per_round']:,}) | {m['batch']:,.0f} / s | "
        f"≥ 5,000 / s | {verdict(m['batch'] >= 5000)} |",
        f"| of which: messages of one record (a live venue's), one transaction each (best of {m['rounds']} rounds of "
        f"{m['single_per_round']:,}) | {m['single']:,.0f} / s | — | |",
        f"| of which the ceiling: bare Ed25519 verifications of a record's size (libsodium via PyNaCl), same rounds | "
        f"{m['ceiling']:,.0f} / s (messages of 500 reach {m['batch'] / m['ceiling']:.0%} of it) | | |",
    ]


def attempt(what: str, scenario: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """One scenario in a temporary folder. A failure is printed and reported in its row; the
    other scenarios still run. The lanes' warnings and errors are printed, counted."""
    print(f"{what} ...", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        try:
            result = scenario(Path(tmp))
        except Exception as exc:
            traceback.print_exc()
            return {"failed": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    for line, count in sorted(result.pop("warnings", Counter()).items()):
        print(f"  logged {count} x  {line}")
    print(f"  {time.monotonic() - started:.0f} s: {result}", flush=True)
    return result


def run(args: argparse.Namespace) -> int:
    """``scripts/bench --venue``: every venue figure, then the venue section printed and put
    into ``args.out`` in place of its old one (the other sections are kept). Exit 1 when a
    scenario failed."""
    issuer = SigningKey(b"\x01" * 32)
    started = time.monotonic()
    merge = attempt("peer records through Ledger.merge, in-process", lambda tmp: bench_merge(tmp, args.merged))
    among = attempt("one lane among 99 simulated peers at 100, 300, 1,000 records/s",
                    lambda tmp: bench_lane_among_peers(tmp, issuer, args.venue_scans))
    lanes = attempt("10 lanes, every pair", lambda tmp: bench_ten_lanes(tmp, issuer, args.lane_scans))
    catch_up = attempt(f"catch-up of {args.missed:,} records missed while away",
                       lambda tmp: bench_catch_up(tmp, issuer, args.missed))
    recovery = attempt(f"an emptied lane recovering {args.lost:,} admissions", lambda tmp: bench_recovery(tmp, issuer, args.lost))
    flood = attempt("catch-up requests at 50/s from one credential",
                    lambda tmp: bench_request_flood(tmp, issuer, args.venue_scans, args.lost * 5))
    lines = [
        SECTION,
        "",
        f"Written by `scripts/bench --venue` on {time.strftime('%Y-%m-%d %H:%M %Z')}; the run took "
        f"{(time.monotonic() - started) / 60:.1f} min.",
        "Real `gate run` processes on simulated hardware and a real mosquitto with the shipped config's queue",
        "limits, all on this machine; simulated peers sign their records with their roster keys as gates do.",
        "This host's speed swings ~1.5x between runs.",
        "",
        "- The simulated peers publish from one MQTT connection, in a process of their own, one record per",
        "  message as gates publish them. Lanes among them have new databases and the peers answer no catch-up",
        '  request, so those lanes decide at once (`recovery = "admit"`, `recovery_wait = 0`).',
        "- Catch-up: a second real lane (lane-p) is online all along and merges the records too. The lane that",
        "  comes back gets the first of them from its persistent session (the shipped `max_queued_messages`:",
        "  beyond it the broker drops the newest) and asks lane-p for the rest, 500 records a message.",
        "- Emptied lane: the admissions are appended to lane A's ledger, sealed with its key, while it runs",
        "  (its outbox publishes them; through the scanner they would take minutes).",
        "",
        *machine(),
        "",
        "| what | figure | budget | |",
        "|---|---|---|---|",
        *among_rows(among),
        *lanes_rows(lanes),
        *catch_up_rows(catch_up, args.missed),
        *recovery_rows(recovery, args.lost),
        *flood_rows(flood),
        *merge_rows(merge),
        "",
    ]
    write_section(Path(args.out), "\n".join(lines))
    return 1 if any("failed" in r for r in (merge, among, lanes, catch_up, recovery, flood)) else 0
