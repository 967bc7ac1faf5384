"""Benchmarks for DESIGN §8, written to BENCHMARKS.md with the machine and versions.

Run through ``scripts/bench``. Each figure says what was measured, how often, and its budget.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import closing
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT))  # tests/support/vendors.py makes the other systems' tickets

from hwsim.broker import Mosquitto, Watcher  # noqa: E402
from hwsim.control import ControlClient  # noqa: E402
from hwsim.lane_config import EVENT, write_config  # noqa: E402
from hwsim.scanner import SimulatedScanner  # noqa: E402
from hwsim.timing import percentile  # noqa: E402
from hwsim.venue import ROOT as TOPIC_ROOT  # noqa: E402
from hwsim.venue import VENUE, ready_on_bus, venue_gate_config  # noqa: E402
from hwsim.venue_keys import VenueKeys  # noqa: E402

from gate.decision import Denial, revocation_prefix  # noqa: E402
from gate.formats import gt1  # noqa: E402
from gate.store import Store, StoreError  # noqa: E402
from gate.store.ledger import ADMISSION  # noqa: E402


def bench_gt1(count: int, rounds: int = 5) -> dict[str, float]:
    """Verifications per second on one core: static and rotating, parse + signature(s) + claims.

    This host's speed swings by 1.5x from one second to the next (other tenants), so the bare
    Ed25519 ceiling and the GT1 paths are timed in interleaved rounds and each keeps its best
    round (as ``timeit`` advises): the comparison is then made in the same phase of the host.
    """
    issuer, holder = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)
    public = bytes(issuer.verify_key)
    kid = gt1.kid_for(public)
    ctx = gt1.Context(time.time(), {kid: gt1.IssuerKey(kid, public)})
    static = gt1.encode_static(gt1.issue(issuer, gt1.build_claims(cti=os.urandom(16), event=EVENT, product="ga")))
    bound = gt1.issue(issuer, gt1.build_claims(cti=os.urandom(16), event=EVENT, holder_key=bytes(holder.verify_key)))
    rotating = gt1.encode_rotating(bound, holder, int(time.time()))
    signed = issuer.sign(b"x" * 120)
    for text in (static, rotating):
        assert not isinstance(gt1.read(text, ctx), Denial)
    runs = {
        "ceiling": lambda: issuer.verify_key.verify(signed),
        "static": lambda: gt1.read(static, ctx),
        "rotating": lambda: gt1.read(rotating, ctx),
    }
    per_round = max(1, count // rounds)
    results = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(per_round):
                run()
            results[name] = max(results[name], per_round / (time.perf_counter() - start))
    return results


FORMAT_LABELS = {
    "pretix_sig1": "pretix signature scheme 1 (libpretixsync vector, 2 keys held)",
    "pretix_random": "pretix random secret (10,000 valid secrets held)",
    "totp": "SafeTix-style TOTP, timestamp form (2 codes × 2 counter variants)",
    "eth_qr": "Ethereum-signed QR (keccak + secp256k1 recovery)",
    "jws": "EdDSA proof token (JWS)",
}


def bench_formats(count: int) -> dict[str, float]:
    """Verifications per second of each other system's format, one core: parse + verify + checks."""
    import json as _json

    from eth_account import Account

    from gate import formats, trust
    from tests.support import vendors

    now = 1_790_000_000
    vectors = _json.loads((vendors.VECTOR_DIR / "pretix-sig1-libpretixsync.json").read_text())
    owner, contract, jws_key = Account.from_key(b"\x11" * 32), "0x" + "ab" * 20, vendors.pretix_key()
    ek, ck = bytes(range(20)), bytes(range(100, 120))
    documents = [
        {"format": "pretix", "event": "event1", "valid_keys": {"pretix_sig1": vectors["valid_keys_pretix_sig1"]},
         "valid_secrets": [{"secret": f"{i:032x}", "item": 1} for i in range(10_000)]},
        {"format": "totp", "event": "arena", "event_key": ek.hex(), "tickets": [{"token": "T1", "key": ck.hex()}]},
        {"format": "eth_qr", "event": "expo", "contract": contract, "owners": {"00" * 32: owner.address}},
        {"format": "jws", "issuer": "iss", "keys": [vendors.jwk(jws_key, "k1")]},
    ]
    env = formats.Env(now, trust.build([trust.parse_document(_json.dumps(d), d["format"]) for d in documents]),
                      venue="bench-venue")
    samples = {
        "pretix_sig1": vectors["cases"][0]["secret"],
        "pretix_random": f"{5000:032x}",
        "totp": f"T1::{vendors.totp_code(ek, now)}::{vendors.totp_code(ck, now)}::{now}",
        "eth_qr": vendors.eth_qr(owner, contract, bytes(32), now),
        "jws": vendors.proof_token(jws_key, "k1", iss="iss", aud="bench-venue", sub="s", evt="e", iat=now, nbf=now, exp=now + 30, jti="j"),
    }
    rates = {}
    for name, text in samples.items():
        fmt = formats.load(name)
        result = fmt.read(text, env)
        assert not isinstance(result, Denial), (name, result)
        runs = max(200, count // (20 if name == "eth_qr" else 4))
        start = time.perf_counter()
        for _ in range(runs):
            fmt.read(text, env)
        rates[name] = runs / (time.perf_counter() - start)
    return rates


def start_daemon(config: Path, notify: str | None = None) -> subprocess.Popen:
    """``gate run`` with its log on a pipe, as under systemd (journald reads a stream socket).

    A log file on the ledger's own disk would entangle the ledger's fsync with the log's
    writeback (ext4 ordered data) and measure the bench, not the gate. The last lines are kept
    for a failed run (``log_tail``), and the warnings and errors for a report (``log_notable``).
    """
    env = dict(os.environ)
    if notify:
        env["NOTIFY_SOCKET"] = notify
    env.pop("JOURNAL_STREAM", None)
    daemon = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], env=env, stderr=subprocess.PIPE)
    tail: deque[bytes] = deque(maxlen=200)
    notable: deque[bytes] = deque(maxlen=1000)

    def read() -> None:
        for line in daemon.stderr:  # type: ignore[union-attr]
            tail.append(line)
            if NOTABLE.search(line):
                notable.append(line)

    threading.Thread(target=read, daemon=True).start()
    daemon.log_tail, daemon.log_notable = tail, notable  # type: ignore[attr-defined]
    return daemon


NOTABLE = re.compile(rb" (WARNING|ERROR|CRITICAL) ")  # gate.field.logsetup's format: time, level, logger


def bench_ledger_append(workdir: Path, count: int) -> dict[str, float]:
    """The durable ledger write alone on this disk: the floor under scan → relay."""
    store = Store(workdir / "floor.db", "bench")
    ledger = store.ledger
    times = []
    try:
        for i in range(count):
            start = time.perf_counter()
            ledger.append(ADMISSION, time.time(), ticket_key=f"{i:064x}", format="gt1", direction="in")
            times.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)
    finally:
        store.close()
    return {"p50": percentile(times, 50), "p99": percentile(times, 99)}


def ticket(issuer: SigningKey, serial: int) -> str:
    """A static GT1 ticket for the bench's event; ``serial`` makes it unique (its cti)."""
    return gt1.encode_static(gt1.issue(issuer, gt1.build_claims(cti=serial.to_bytes(16, "big"), event=EVENT)))


def admit(lane: ControlClient, scanner: SimulatedScanner, text: str, timeout: float = 10.0) -> tuple[float, dict]:
    """Someone in line shows ``text`` at the scanner and walks through; returns once the passage
    is recorded: (scanner line written → unlock relay energized, in ms; the decision event).

    Both ends read CLOCK_MONOTONIC (the daemon stamps each pin change with it), so the figure
    includes the pty, pyserial, the decision, the durable ledger write and gpiozero.
    """
    mark = lane.mark()
    lane.send("person", direction="in", walks=True)
    lane.wait_for(lambda e: e["event"] == "queued", start=mark, timeout=timeout)  # in line before the scan arrives
    sent = time.monotonic()
    scanner.scan(text)
    unlock = lane.wait_for(lambda e: e["event"] == "output" and e["name"] == "unlock_in" and e["on"], start=mark, timeout=timeout)
    decision = lane.wait_for(lambda e: e["event"] == "decision", start=mark, timeout=timeout)
    assert decision["accepted"], decision
    lane.wait_for(lambda e: e["event"] == "record" and e["kind"] == "passage", start=mark, timeout=timeout)
    return (unlock["t"] - sent) * 1000, decision


def merged_record(event: dict[str, Any], origin: str, seq: int) -> bool:
    """Whether a lane's event is the merge of ``origin``'s record ``seq`` (one ``peer_records``
    event a merge, with every record it took in)."""
    return event["event"] == "peer_records" and any(r["origin"] == origin and r["seq"] == seq for r in event["records"])


def log_tail(daemon: subprocess.Popen, lines: int = 200) -> str:
    """The last lines a ``start_daemon`` process logged."""
    return b"".join(list(daemon.log_tail)[-lines:]).decode(errors="replace")  # type: ignore[attr-defined]


def bench_scan_to_relay(workdir: Path, issuer: SigningKey, count: int) -> dict[str, float]:
    """Scanner line written to the pty → unlock relay pin energized, through ``gate run`` (``admit``)."""
    config = write_config(workdir, base64.b64encode(bytes(issuer.verify_key)).decode(), walk=0.005, timeout=2.0, pulse_ms=20)
    scanner = SimulatedScanner(workdir / "scanner")
    daemon = start_daemon(config)
    latencies, totals = [], []
    try:
        lane = ControlClient(str(workdir / "sim.sock"), timeout=20)
        assert scanner.wait_until_opened(20), "the daemon's serial driver never opened the scanner"
        for i in range(count):
            latency, decision = admit(lane, scanner, ticket(issuer, i))
            latencies.append(latency)
            totals.append(decision["latency_ms"])
    except Exception:
        sys.stderr.write(log_tail(daemon))
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        scanner.close()
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "decide_p50": percentile(totals, 50),
        "decide_p99": percentile(totals, 99),
    }


def lane_config(workdir: Path, issuer: SigningKey, gate: str, port: int, keys: VenueKeys,
                sync: dict[str, object] | None = None) -> Path:
    """A venue lane's gate.toml (``hwsim.venue.venue_gate_config``, quick turnstile timings),
    with ``sync`` merged into its ``[sync]`` table."""
    public = base64.b64encode(bytes(issuer.verify_key)).decode()
    config = venue_gate_config(workdir, public, gate, port, keys, walk=0.005, timeout=2.0)
    if sync:
        import tomllib

        import tomli_w

        data = tomllib.loads(config.read_text())
        data["sync"].update(sync)
        config.write_text(tomli_w.dumps(data))
    return config


class Lanes:
    """A real mosquitto and real ``gate run`` lanes (``names``) with their scanners and control
    sockets, online on the bus holding the admin's roster, which also names ``roster_extra``
    (simulated peers); everything stops on leaving the ``with``. ``broker``: one already
    started (the lanes stop it at the end); ``sync``: keys for every lane's ``[sync]`` table."""

    def __init__(self, workdir: Path, issuer: SigningKey, names: Sequence[str], keys: VenueKeys | None = None, *,
                 broker: Mosquitto | None = None, roster_extra: Sequence[str] = (), sync: dict[str, object] | None = None,
                 ready_timeout: float = 30.0) -> None:
        self.workdir = workdir
        self.names = list(names)
        self.ready_timeout = ready_timeout
        self.broker = broker or Mosquitto(workdir / "broker")
        self.keys = keys or VenueKeys(VENUE, self.names)
        self.roster = VenueKeys(VENUE, [*self.names, *roster_extra], admin=self.keys.admin)  # keys come from the names
        self.configs = {g: lane_config(workdir, issuer, g, self.broker.port, self.keys, sync) for g in self.names}
        self.scanners = {g: SimulatedScanner(workdir / g / "scanner") for g in self.names}
        self.daemons: dict[str, subprocess.Popen] = {}  # each lane's latest process
        self.processes: list[tuple[str, subprocess.Popen]] = []  # every one started, in turn
        self.exit_codes: dict[str, list[int]] = {g: [] for g in self.names}  # of every stop, in turn
        self.watcher: Watcher | None = None
        for gate in self.names:
            self.start(gate)

    def __enter__(self) -> "Lanes":
        try:
            self.lanes = {g: ControlClient(str(self.workdir / g / "sim.sock"), timeout=20) for g in self.names}
            self.watcher = Watcher(self.broker.port, [f"{TOPIC_ROOT}gates/+/status"])
            self.watcher.publish(f"{TOPIC_ROOT}bundle", self.roster.bundle(), retain=True)  # gates take in each other's records
            deadline = time.monotonic() + self.ready_timeout
            while not all(ready_on_bus(self.watcher, g) for g in self.names):
                assert time.monotonic() < deadline, "gates did not come online holding the roster"
                time.sleep(0.05)
            for gate, scanner in self.scanners.items():
                assert scanner.wait_until_opened(20), f"{gate}'s serial driver never opened the scanner"
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def start(self, gate: str, notify: str | None = None) -> subprocess.Popen:
        self.daemons[gate] = start_daemon(self.configs[gate], notify)
        self.processes.append((gate, self.daemons[gate]))
        return self.daemons[gate]

    def stop(self, gate: str) -> int:
        """SIGTERM, as systemd stops a lane; its exit code."""
        daemon = self.daemons[gate]
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        self.exit_codes[gate].append(daemon.wait(15))
        return self.exit_codes[gate][-1]

    def database(self, gate: str) -> Path:
        return self.workdir / gate / "state" / "gate.db"

    def __exit__(self, *exc: object) -> None:
        try:
            if self.watcher is not None:
                self.watcher.close()
            for gate, daemon in self.daemons.items():
                if exc[0] is not None:
                    sys.stderr.write(f"--- {gate}'s log, last lines ---\n{log_tail(daemon, 40)}")
                if daemon.returncode is None:
                    self.stop(gate)
        finally:
            for scanner in self.scanners.values():
                scanner.close()
            self.broker.stop()


class TwoGates(Lanes):
    """Two lanes (gate-a, gate-b) on one mosquitto."""

    GATES = ("gate-a", "gate-b")

    def __init__(self, workdir: Path, issuer: SigningKey, keys: VenueKeys | None = None) -> None:
        super().__init__(workdir, issuer, self.GATES, keys)


def bench_sync(workdir: Path, issuer: SigningKey, count: int, backlog: int) -> dict[str, float]:
    """Two ``gate run`` processes and a real mosquitto.

    Latency: A's admission record (durable, published to A's control socket) → the same record
    merged into B's ledger (B's control socket), both stamped with CLOCK_MONOTONIC. From then
    on B answers ``already_used``. Catch-up: B is stopped, ``backlog`` records are added to A's
    ledger, B is started again; the figure is B's spawn → B holding all of them.
    """
    latencies: list[float] = []
    with TwoGates(workdir, issuer) as venue:
        a, b, scanner = venue.lanes["gate-a"], venue.lanes["gate-b"], venue.scanners["gate-a"]
        for i in range(count):
            mark_a, mark_b = a.mark(), b.mark()
            a.send("person", direction="in", walks=True)
            a.wait_for(lambda e: e["event"] == "queued", start=mark_a)
            scanner.scan(ticket(issuer, 10**6 + i))
            admission = a.wait_for(lambda e: e["event"] == "record" and e["kind"] == "admission", start=mark_a)
            merged = b.wait_for(lambda e: merged_record(e, "gate-a", admission["seq"]), start=mark_b)
            latencies.append((merged["t"] - admission["t"]) * 1000)
            a.wait_for(lambda e: e["event"] == "record" and e["kind"] == "passage", start=mark_a)
            time.sleep(0.01)

        venue.daemons["gate-b"].send_signal(signal.SIGTERM)
        venue.daemons["gate-b"].wait(15)
        with closing(Store(workdir / "gate-a" / "state" / "gate.db", "gate-a")) as store:
            for i in range(backlog):
                store.ledger.append(ADMISSION, time.time(), ticket_key=f"{i:064x}", format="gt1", direction="in")
            expected = store.ledger.last_seq()
        started = time.monotonic()
        venue.daemons["gate-b"] = start_daemon(venue.configs["gate-b"])
        db = workdir / "gate-b" / "state" / "gate.db"
        while True:
            held = 0
            if db.exists():
                try:
                    with closing(Store(db, "gate-b", read_only=True)) as store:
                        held = store.ledger.count("gate-a")
                except (StoreError, sqlite3.Error):
                    pass
            if held == expected:
                break
            assert time.monotonic() - started < 120, f"B holds {held} of {expected}"
            time.sleep(0.02)
        catch_up = time.monotonic() - started
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies), "catch_up": catch_up}


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process: the most resident memory it ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_trust(workdir: Path, issuer: SigningKey, revocations: int, deltas: int) -> dict[str, float]:
    """Signed bundles and deltas (DESIGN §5).

    - ``gate bundle load`` of a bundle with ``revocations`` entries, in its own process: wall
      time (verify, parse, stage, swap) and its peak RSS;
    - ``Revocations.is_revoked`` on that database, for revoked and unknown tickets;
    - the same bundle published on the bus to two ``gate run``: publish → held by both, their
      peak RSS, and gate A's scan → decision latency for admissions made meanwhile;
    - ``deltas`` revocation deltas, one after another: publish → applied at every gate (the
      gates' ``bundle`` events on their control sockets, CLOCK_MONOTONIC like the publish).
    """
    import hashlib

    from gate.trust import signed

    venue_keys = VenueKeys(VENUE, ["gate-a", "gate-b", "gate-load"])
    admin = venue_keys.admin
    public = base64.b64encode(bytes(issuer.verify_key)).decode()
    keys = [hashlib.sha256(i.to_bytes(8, "big")).hexdigest() for i in range(revocations)]
    bundle = venue_keys.bundle(100, revoked=signed.pack_prefixes([revocation_prefix(k) for k in keys]))
    bundle_file = workdir / "bundle.json"
    bundle_file.write_bytes(bundle)
    out: dict[str, float] = {"bundle_mb": len(bundle) / 2**20}

    loader = venue_gate_config(workdir, public, "gate-load", 1, venue_keys, walk=0.01, timeout=2.0)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "gate", "bundle", "load", str(bundle_file), "--config", str(loader)],
                               stdout=subprocess.DEVNULL)
    peak = 0.0  # polled: wait4's ru_maxrss would count the bench's own pages copied at fork
    while process.poll() is None:
        try:
            peak = max(peak, peak_rss_mb(process.pid))
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    assert process.returncode == 0, "gate bundle load failed"
    out["load_s"], out["load_rss_mb"] = time.monotonic() - started, peak

    store = Store(workdir / "gate-load" / "state" / "gate.db", "gate-load")
    lists = store.revocations
    for name, sample in (("lookup_hit_us", keys[:: max(1, revocations // 20000)]),
                         ("lookup_miss_us", [hashlib.sha256(b"x%d" % i).hexdigest() for i in range(20000)])):
        assert all(lists.is_revoked(k) == (name == "lookup_hit_us") for k in sample[:100])
        started = time.perf_counter()
        for key in sample:
            lists.is_revoked(key)
        out[name] = (time.perf_counter() - started) / len(sample) * 1e6
    store.close()

    with TwoGates(workdir, issuer, venue_keys) as venue:
        gates, lanes, admin_client = venue.GATES, venue.lanes, venue.watcher

        def held(gate: str) -> int:
            try:
                with closing(Store(workdir / gate / "state" / "gate.db", gate, read_only=True)) as store:
                    return store.trust.held().bundle_version
            except (StoreError, sqlite3.Error):
                return 0

        started = time.monotonic()
        admin_client.publish(f"{TOPIC_ROOT}bundle", bundle, retain=True)
        applied: dict[str, float] = {}
        during: list[float] = []
        lane, scanner, n = lanes["gate-a"], venue.scanners["gate-a"], 0
        while len(applied) < len(gates):
            assert time.monotonic() - started < 120, "the bundle did not reach every gate"
            n += 1
            mark = lane.mark()
            lane.send("person", direction="in", walks=True)
            lane.wait_for(lambda e: e["event"] == "queued", start=mark)
            scanner.scan(ticket(issuer, 2 * 10**6 + n))
            during.append(lane.wait_for(lambda e: e["event"] == "decision", start=mark, timeout=30)["latency_ms"])
            lane.wait_for(lambda e: e["event"] == "record" and e["kind"] in ("passage", "revert"), start=mark)
            for gate in gates:
                if gate not in applied and held(gate) == 100:
                    applied[gate] = time.monotonic() - started
        out["bus_apply_s"] = max(applied.values())
        out["gate_rss_mb"] = max(peak_rss_mb(d.pid) for d in venue.daemons.values())
        out["during_max_ms"], out["during_p50_ms"], out["during_n"] = max(during), percentile(during, 50), len(during)

        effective: list[float] = []
        revoked: set[bytes] = set()
        for version in range(1, deltas + 1):
            revoked.add(revocation_prefix(hashlib.sha256(b"delta-%d" % version).hexdigest()))
            delta = signed.sign(signed.delta_payload("demo-venue", 100, version, time.time(), signed.pack_prefixes(revoked), b""), admin)
            marks = {g: lanes[g].mark() for g in gates}
            sent = time.monotonic()
            admin_client.publish(f"{TOPIC_ROOT}bundle/delta", delta, retain=True)
            times = [lanes[g].wait_for(lambda e: e["event"] == "bundle" and e["what"] == "delta" and e["version"] == version,
                                       start=marks[g])["t"] for g in gates]
            effective.append((max(times) - sent) * 1000)
        out["delta_p50_ms"], out["delta_p99_ms"], out["delta_max_ms"] = percentile(effective, 50), percentile(effective, 99), max(effective)
    return out


def bench_ready(workdir: Path, issuer: SigningKey, runs: int) -> dict[str, float]:
    """``gate run`` spawned → READY=1 on the notify socket."""
    config = write_config(workdir, base64.b64encode(bytes(issuer.verify_key)).decode(), walk=0.1, timeout=2.0)
    scanner = SimulatedScanner(workdir / "scanner")
    times = []
    try:
        for i in range(runs):
            path = str(workdir / f"notify-{i}.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(30)
            start = time.monotonic()
            daemon = start_daemon(config, notify=path)
            while b"READY=1" not in sock.recv(4096):
                pass
            times.append(time.monotonic() - start)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(15)
            sock.close()
    finally:
        scanner.close()
    return {"median": statistics.median(times), "max": max(times)}


def _frames(size: tuple[int, int], issuer: SigningKey) -> tuple[list, list, str]:
    """Idle frames (the corpus's photographs without a code, else simulated scenes) and frames
    with a GT1 ticket on a phone, at ``size``; and where the idle frames came from."""
    import numpy as np
    from hwsim import corpus
    from hwsim.camera import Look, SimulatedCamera, photograph
    from PIL import Image

    from drivers.camera import load_picture

    width, height = size
    if corpus.available():
        pictures = [corpus.CORPUS / item["image"] for item in corpus.manifest() if item["format"] == "none"]
        idle = [np.asarray(Image.fromarray(load_picture(str(p))).resize(size)) for p in pictures]
        origin = f"{len(idle)} photographs without a code (corpus falsepositives-2, resized)"
    else:
        idle = SimulatedCamera(width, height)._idle
        origin = "simulated empty scenes (corpus not found)"
    coded = [photograph(ticket(issuer, 0x42), "qr", Look(turn=t, tilt=0.1), width, height, seed=t) for t in (0, 15, 30)]
    return idle, coded, origin


def bench_decode(issuer: SigningKey, rounds: int = 5) -> dict[str, object]:
    """Decode time per frame as the camera reader spends it: one pass per frame, in the
    schedule's turn (drivers.decoders.camera_passes), both decoders, two frame sizes."""
    from drivers.decoders import DecoderUnavailable, camera_passes, make_decoder

    results: dict[str, object] = {}
    for size in ((640, 480), (1280, 720)):
        idle, coded, origin = _frames(size, issuer)
        results["idle_origin"] = origin
        for name, symbologies in (("zxing", ("qr", "pdf417", "aztec")), ("pyzbar", ("qr",))):
            try:
                decoder = make_decoder(name, symbologies)
            except DecoderUnavailable as exc:
                results[f"{name} {size[0]}x{size[1]}"] = f"not measured: {exc}"
                continue
            passes = camera_passes(symbologies)
            for kind, frames in (("idle", idle), ("code", coded)):
                times = []
                for _ in range(rounds):
                    for i, frame in enumerate(frames * 4):
                        started = time.perf_counter()
                        decoder.decode(frame, passes[i % len(passes)] if kind == "idle" else passes[0])
                        times.append((time.perf_counter() - started) * 1000)
                results[f"{name} {size[0]}x{size[1]} {kind}"] = (percentile(times, 50), percentile(times, 90))
    return results


def bench_corpus() -> dict[str, object]:
    from hwsim import corpus

    from drivers.decoders import DecoderUnavailable, make_decoder

    if not corpus.available():
        return {}
    out: dict[str, object] = {}
    for name, symbologies in (("zxing", ("qr", "pdf417", "aztec")), ("pyzbar", ("qr",))):
        try:
            rates, wrong = corpus.detection_rates(make_decoder(name, symbologies))
        except DecoderUnavailable:
            continue
        out[name] = {
            **{s: corpus.share(rates, prefix) for s, prefix in (("qr", "qrcode"), ("pdf417", "pdf417"), ("aztec", "aztec")) if s in symbologies},
            "wrong": len(wrong),
            "false": rates.get("falsepositives-2", [0, 0])[0],
        }
    return out


NFC_SENSE_WAIT = 0.03  # an RC-S380's poll waits 30 ms for a SENS_RES (nfcpy rcs380.py sense_tta: InCommRF, 30)


def quick_sensing_udp() -> Any:
    """nfcpy's udp driver with a real reader's poll. The driver waits a whole second for an
    answer to each SENS_REQ, so a phone entering the field waited up to a second to be seen
    (the 946 ms "field → relay" before): the simulator's share, not the lane's. With the 30 ms
    wait of an RC-S380 the lane's own ``poll_interval`` sets the cadence."""
    import nfc.clf.udp

    class QuickSensingUdp(nfc.clf.udp.Device):
        _sensing = False

        def sense_tta(self, target: Any) -> Any:
            self._sensing = True
            try:
                return super().sense_tta(target)
            finally:
                self._sensing = False

        def sense_ttb(self, target: Any) -> Any:  # (an RC-S380 waits 30 ms for Type B too)
            self._sensing = True
            try:
                return super().sense_ttb(target)
            finally:
                self._sensing = False

        def _recv_data(self, timeout: float | None, *brty: str) -> Any:
            if self._sensing and timeout is not None:  # the SENS_RES wait, only
                self._sensing = False
                timeout = min(timeout, NFC_SENSE_WAIT)
            return super()._recv_data(timeout, *brty)

    return QuickSensingUdp


def bench_reader_to_relay(workdir: Path, issuer: SigningKey, count: int) -> dict[str, float]:
    """Camera frame available → relay energized, and NFC tap → relay energized, through the
    daemon (in this process: the simulated camera and the udp phone are in-process too)."""
    import copy
    import queue

    import nfc.clf.udp

    from hwsim.camera import Look, photograph
    from hwsim.phone import GT1Phone

    from gate import config as gate_config
    from gate.daemon import Daemon

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import tomllib

    data = tomllib.loads(write_config(workdir, base64.b64encode(bytes(issuer.verify_key)).decode(), walk=0.005,
                                      timeout=2.0, pulse_ms=20).read_text())
    data = copy.deepcopy(data)
    data.pop("scanner", None)
    data["camera"] = {"source": "simulator", "hold_off": 0.5}
    data["nfc"] = {"device": f"udp:localhost:{port}"}  # the default poll_interval
    udp_device = nfc.clf.udp.Device
    nfc.clf.udp.Device = quick_sensing_udp()  # for the lane's reader to open (the phone's listen is the driver's own)
    try:
        daemon = Daemon(gate_config.parse(data, "bench.toml"))
        daemon.start()
        daemon.readers.nfc.connected.wait(5)
    finally:
        nfc.clf.udp.Device = udp_device
    unlocks: queue.Queue[float] = queue.Queue()
    daemon.hardware.turnstile.listeners.append(lambda name, on: unlocks.put(time.monotonic()) if name == "unlock_in" and on else None)
    read_ms: list[float] = []  # from the frame that was read: the decision's own latency
    daemon.loop.listeners.append(lambda kind, d: read_ms.append(d["latency_ms"]) if kind == "decision" and d["source"] == "camera" else None)
    holder = SigningKey(b"\x07" * 32)
    camera_ms, tap_ms, field_ms = [], [], []
    try:
        for i in range(count):
            frames = [photograph(ticket(issuer, 10_000 + i), "qr", Look(turn=7 * i % 40), seed=i)]
            daemon.hardware.turnstile.person("in", True)
            daemon.hardware.camera.show_frames(frames, seconds=0.6)
            unlocked = unlocks.get(timeout=5)
            camera_ms.append((unlocked - daemon.hardware.camera.first_frame_at) * 1000)
            time.sleep(0.7)
        for i in range(max(10, count // 3)):
            cose = gt1.issue(issuer, gt1.build_claims(cti=(20_000 + i).to_bytes(16, "big"), event=EVENT,
                                                       holder_key=bytes(holder.verify_key)))
            daemon.hardware.turnstile.person("in", True)
            phone = GT1Phone(port, cose, holder)
            entered = time.monotonic()
            assert phone.present(0.05, timeout=5)
            unlocked = unlocks.get(timeout=5)
            tap_ms.append((unlocked - phone.activated_at) * 1000)
            field_ms.append((unlocked - entered) * 1000)
            time.sleep(0.1)
    finally:
        daemon.stop()
    return {
        "camera_p50": percentile(camera_ms, 50), "camera_p99": percentile(camera_ms, 99), "camera_n": len(camera_ms),
        "read_p50": percentile(read_ms, 50), "read_p99": percentile(read_ms, 99),
        "tap_p50": percentile(tap_ms, 50), "tap_p99": percentile(tap_ms, 99), "tap_n": len(tap_ms),
        "field_p50": percentile(field_ms, 50), "field_max": max(field_ms), "poll_ms": daemon.readers.nfc.poll_interval * 1000,
    }


def decode_lines(decode: dict[str, object]) -> list[str]:
    lines = []
    for key, value in decode.items():
        if key == "idle_origin":
            continue
        if isinstance(value, str):
            lines.append(f"| camera decode, {key} | {value} | | |")
            continue
        name, size, kind = key.split()
        p50, p90 = value  # type: ignore[misc]
        what = f"idle frame ({decode['idle_origin']}), the passes in turn" if kind == "idle" else "frame with a GT1 QR on a phone, QR pass"
        budgeted = name == "zxing" and size == "640x480" and kind == "idle"
        lines.append(f"| camera decode {size}, {name}: {what} | median {p50:.2f} ms, p90 {p90:.2f} ms | "
                     + (f"≤ 1.5 ms median | {'within budget' if p50 <= 1.5 else '**over budget**'} |" if budgeted else "— | |"))
    return lines


def corpus_lines(rates: dict[str, object]) -> list[str]:
    if not rates:
        return ["| detection on the corpus | not measured: ../shared/corpus not found | | |"]
    lines = []
    for name, r in rates.items():
        shares = ", ".join(f"{s} {v:.1%}" for s, v in r.items() if s not in ("wrong", "false"))  # type: ignore[union-attr]
        budget = "≥ 90 % each, nothing wrong, nothing on falsepositives-2" if name == "zxing" else "—"
        ok = name != "zxing" or (min(v for s, v in r.items() if s not in ("wrong", "false")) >= 0.9 and r["wrong"] == 0 and r["false"] == 0)  # type: ignore[index,union-attr]
        lines.append(f"| detection on the zxing black-box photographs, {name} | {shares}; wrong reads {r['wrong']}, reads on pictures without a code {r['false']} | {budget} | {'within budget' if ok else '**over budget**'} |")  # type: ignore[index]
    return lines


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("cbor2", "base45", "PyNaCl", "gpiozero", "pyserial", "sqlite-utils", "zxing-cpp", "pyzbar", "nfcpy"))
    return [
        f"- machine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {versions}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="measure gate's budgets, write BENCHMARKS.md")
    parser.add_argument("--verifications", type=int, default=20000)
    parser.add_argument("--scans", type=int, default=300)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--revocations", type=int, default=1_000_000)
    parser.add_argument("--deltas", type=int, default=50)
    parser.add_argument("--readers", type=int, default=60, help="camera presentations (NFC taps: a third)")
    parser.add_argument("--only", choices=("trust", "readers"), help="run one part (prints it; BENCHMARKS.md is left alone)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    venue = parser.add_argument_group("the venue section (scripts/bench_venue.py)")
    venue.add_argument("--venue", action="store_true", help="run only the venue section; it replaces that section of --out")
    venue.add_argument("--venue-scans", type=int, default=100, help="scans at the lane among 99 peers, at each rate")
    venue.add_argument("--lane-scans", type=int, default=20, help="scans at each of the 10 lanes")
    venue.add_argument("--missed", type=int, default=100_000, help="records made while a lane is away")
    venue.add_argument("--lost", type=int, default=2_000, help="admissions an emptied lane recovers")
    venue.add_argument("--merged", type=int, default=20_000, help="records through Ledger.merge in-process")
    import bench_bridge
    import bench_dashboard  # scripts/ is on the path: this script's folder

    bench_dashboard.add_arguments(parser)  # --dashboard and its sizes
    bench_bridge.add_arguments(parser)  # --bridge and its sizes
    args = parser.parse_args()
    if args.venue:
        import bench_venue

        return bench_venue.run(args)
    if args.dashboard:
        return bench_dashboard.run(args)
    if args.bridge:
        return bench_bridge.run(args)
    issuer = SigningKey(b"\x01" * 32)
    if args.only == "trust":
        with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
            print(bench_trust(Path(tmp), issuer, args.revocations, args.deltas))
        return 0
    if args.only == "readers":
        print(bench_decode(issuer))
        print(bench_corpus())
        with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
            print(bench_reader_to_relay(Path(tmp), issuer, args.readers))
        return 0

    print("GT1 verifications ...", flush=True)
    gt1_rates = bench_gt1(args.verifications)
    print("other formats' verifications ...", flush=True)
    format_rates = bench_formats(args.verifications)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        print("scan → relay through gate run ...", flush=True)
        relay = bench_scan_to_relay(Path(tmp), issuer, args.scans)
        floor = bench_ledger_append(Path(tmp), args.scans)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        print("venue sync through mosquitto ...", flush=True)
        sync = bench_sync(Path(tmp), issuer, args.scans, args.backlog)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        print(f"trust bundles: {args.revocations:,} revocations, {args.deltas} deltas ...", flush=True)
        tr = bench_trust(Path(tmp), issuer, args.revocations, args.deltas)
    print("camera decoding and the corpus ...", flush=True)
    decode, rates = bench_decode(issuer), bench_corpus()
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        print("camera and NFC → relay ...", flush=True)
        readers = bench_reader_to_relay(Path(tmp), issuer, args.readers)
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        print("start → READY ...", flush=True)
        ready = bench_ready(Path(tmp), issuer, args.starts)

    def verdict(ok: bool) -> str:
        return "within budget" if ok else "**over budget**"

    lines = [
        "# Benchmarks",
        "",
        f"Written by `scripts/bench` on {time.strftime('%Y-%m-%d %H:%M %Z')}. Budgets: DESIGN.md §8 (this machine;",
        "a Raspberry Pi 4 is roughly 6-8x slower). Rerun after touching a hot path.",
        "",
        *machine(),
        "",
        "| what | figure | budget | |",
        "|---|---|---|---|",
        f"| GT1 static verifications, one core (best of 5 rounds of {args.verifications // 5}) | {gt1_rates['static']:,.0f} / s | ≥ 10,000 / s | {verdict(gt1_rates['static'] >= 10000)} |",
        f"| GT1 rotating verifications (two signatures), one core | {gt1_rates['rotating']:,.0f} / s | — | |",
        f"| of which the ceiling: bare Ed25519 verifications (libsodium via PyNaCl), one core | {gt1_rates['ceiling']:,.0f} / s (GT1 static reaches {gt1_rates['static'] / gt1_rates['ceiling']:.0%} of it) | | |",
        *(f"| {FORMAT_LABELS[name]} verifications, one core | {rate:,.0f} / s | — | |" for name, rate in format_rates.items()),
        f"| scanner line on the pty → relay pin energized, through `gate run` ({args.scans} admissions) | p50 {relay['p50']:.2f} ms, p99 {relay['p99']:.2f} ms, max {relay['max']:.2f} ms | p99 ≤ 5 ms | {verdict(relay['p99'] <= 5)} |",
        f"| of which: line framed → decision made, incl. durable ledger write | p50 {relay['decide_p50']:.2f} ms, p99 {relay['decide_p99']:.2f} ms | | |",
        f"| of which the floor: one durable ledger append on this disk, alone ({args.scans} appends) | p50 {floor['p50']:.2f} ms, p99 {floor['p99']:.2f} ms | | |",
        f"| `gate run` spawned → systemd READY ({args.starts} starts) | median {ready['median']:.2f} s, max {ready['max']:.2f} s | ≤ 1.5 s | {verdict(ready['median'] <= 1.5)} |",
        f"| admission at gate A → merged at gate B (`already_used` from then on), two `gate run` and mosquitto ({args.scans} admissions) | p50 {sync['p50']:.2f} ms, p99 {sync['p99']:.2f} ms, max {sync['max']:.2f} ms | p99 ≤ 50 ms | {verdict(sync['p99'] <= 50)} |",
        f"| catch-up: gate B started after missing {args.backlog:,} of A's records → B holds all of them (incl. B's start) | {sync['catch_up']:.2f} s | — | |",
        f"| revocation delta published → applied at both of two `gate run` ({args.deltas} deltas, one after another) | p50 {tr['delta_p50_ms']:.2f} ms, p99 {tr['delta_p99_ms']:.2f} ms, max {tr['delta_max_ms']:.2f} ms | well under 1 s (DESIGN §5) | {verdict(tr['delta_max_ms'] < 1000)} |",
        f"| revocation lookup with {args.revocations:,} revoked (bundle), revoked / unknown ticket | {tr['lookup_hit_us']:.1f} µs / {tr['lookup_miss_us']:.1f} µs | ≤ 20 µs | {verdict(max(tr['lookup_hit_us'], tr['lookup_miss_us']) <= 20)} |",
        f"| `gate bundle load` of {args.revocations:,} revocations ({tr['bundle_mb']:.1f} MB signed): verify, stage, swap | {tr['load_s']:.2f} s, peak RSS {tr['load_rss_mb']:.0f} MB | ≤ 10 s, ≤ 150 MB | {verdict(tr['load_s'] <= 10 and tr['load_rss_mb'] <= 150)} |",
        f"| the same bundle published on the bus → held by both `gate run` | {tr['bus_apply_s']:.2f} s, gates' peak RSS {tr['gate_rss_mb']:.0f} MB | ≤ 10 s, ≤ 150 MB | {verdict(tr['bus_apply_s'] <= 10 and tr['gate_rss_mb'] <= 150)} |",
        f"| of which: gate A's scan → decision for {tr['during_n']:.0f} admissions made during that apply | p50 {tr['during_p50_ms']:.2f} ms, max {tr['during_max_ms']:.2f} ms | | |",
        *decode_lines(decode),
        f"| camera: first frame holding a ticket (QR, on a phone) → relay energized, through the daemon, 30 fps ({readers['camera_n']} presentations) | p50 {readers['camera_p50']:.1f} ms, p99 {readers['camera_p99']:.1f} ms | — | includes waiting up to one frame for the QR pass |",
        f"| of which: the frame that was read → decision made, incl. durable ledger write | p50 {readers['read_p50']:.2f} ms, p99 {readers['read_p99']:.2f} ms | | |",
        f"| NFC tap → relay energized, nfcpy udp driver, simulated phone, GT1 challenge and holder proof ({readers['tap_n']} taps) | p50 {readers['tap_p50']:.2f} ms, p99 {readers['tap_p99']:.2f} ms | — | from activation (RATS) |",
        f"| phone entering the field → relay energized, the lane polling every {readers['poll_ms']:.0f} ms (`[nfc] poll_interval`) | p50 {readers['field_p50']:.0f} ms, max {readers['field_max']:.0f} ms | — | the udp driver's 1 s wait for each poll's answer cut to an RC-S380's 30 ms: the wait for the next poll, then the tap |",
        *corpus_lines(rates),
        "",
        "Not measured yet (their issue brings it): sustained 100 scans/s.",
        "",
    ]
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    kept = old[old.find("\n## ") + 1:] if "\n## " in old else ""  # the sections `--venue`, `--dashboard`… write
    out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
