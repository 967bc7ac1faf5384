"""Back-office benchmarks (issue 20): ``scripts/bench --bridge`` writes the "Back office" section
of BENCHMARKS.md.

A real pretix 2026.8.0 (tests/support/pretix.py: its own virtualenv, SQLite, ``runserver``, as the
suite runs it), a real mosquitto with the shipped ACL, and ``gate bridge run`` as a venue runs it
(its own process, one upload worker). The lanes are simulated: each signs its admission and
passage records with its roster key, exactly as a gate seals them, and publishes them on its own
ledger topic with its own credentials, one ticket's two records per message.

- **upload lag** at a few steady rates (2, 4 and 8 check-ins a second): a passage's time at the
  lane → pretix accepted the check-in (the bridge's ``done_at``), p50 and p99. Budget: p99 ≤ 2 s
  with pretix up (issue 20);
- **drain**: pretix stopped while the lanes make 10,000 check-ins (the bridge queues them all),
  then started: the rate at which the queue empties into pretix (first to last accepted), and
  whether pretix then holds every one of them once.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from bench import ROOT, machine, percentile
from bench_venue import verdict, write_section
from nacl.signing import SigningKey

from gate.bridge.builder import secret_key
from gate.store.ledger import ADMISSION, PASSAGE, Record
from gate.sync.messages import encode_records
from gate.trust.records import sealer
from tests.bridge.helpers import Venue, gate_cli
from tests.support.lanes import wait_until
from tests.support.pretix import PretixServer, PretixTemplate, ensure_pretix
from tests.support.venue import KEYS, VENUE

SECTION = "## Back office"
LANES = ("lane-a", "lane-b", "lane-c")
LAG_BUDGET = 2.0  # seconds, p99 (issue 20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the back-office section (scripts/bench_bridge.py)")
    group.add_argument("--bridge", action="store_true", help="run only the back-office section; it replaces that section of --out")
    group.add_argument("--bridge-rates", default="2,4,8", help="check-ins per second for the upload lag, comma-separated")
    group.add_argument("--bridge-seconds", type=float, default=60.0, help="how long each rate runs")
    group.add_argument("--bridge-drain", type=int, default=10_000, help="check-ins queued while pretix is stopped")


class SimulatedLanes:
    """The venue's lanes as the bridge hears them: per lane, an epoch, sealed records numbered
    1, 2, 3…, published QoS 1 on ``ledger/<lane>`` with the lane's own broker login."""

    def __init__(self, venue: Venue) -> None:
        self.seals = {lane: sealer(KEYS.gates[lane], VENUE) for lane in LANES}
        self.epochs = {lane: secrets.token_hex(8) for lane in LANES}
        self.tops = dict.fromkeys(LANES, 0)
        self.clients: dict[str, Any] = {}
        for lane in LANES:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{lane}", clean_session=True)
            client.username_pw_set(lane, f"pw-{lane}")
            client.connect("127.0.0.1", venue.broker.port, keepalive=30)
            client.loop_start()
            self.clients[lane] = client
        self._turn = itertools.cycle(LANES)

    def records(self, lane: str, secret: str, at: float) -> list[tuple[str, bytes]]:
        """An admission of ``secret`` and its passage, both at ``at``."""
        seal, epoch = self.seals[lane], self.epochs[lane]
        self.tops[lane] += 2
        admission = Record(lane, self.tops[lane] - 1, ADMISSION, at, ticket_key=secret_key(secret), format="pretix_sig1",
                           direction="in", details={"known": 0, "limit": 1}, epoch=epoch)
        passage = Record(lane, self.tops[lane], PASSAGE, at, ticket_key=admission.ticket_key, format="pretix_sig1",
                         direction="in", ref_origin=lane, ref_seq=admission.seq, epoch=epoch, ref_epoch=epoch)
        return [seal(admission), seal(passage)]

    def admit(self, secrets_: list[str]) -> None:
        """Check-ins of ``secrets_`` now, by turns at each lane; one message per lane and call
        (at most 250 tickets: a ledger message holds 500 records)."""
        by_lane: dict[str, list[tuple[str, bytes]]] = {}
        now = time.time()
        for secret in secrets_:
            lane = next(self._turn)
            by_lane.setdefault(lane, []).extend(self.records(lane, secret, now))
        for lane, sealed in by_lane.items():
            for i in range(0, len(sealed), 500):
                info = self.clients[lane].publish(f"gate/v2/{VENUE}/ledger/{lane}", encode_records(lane, sealed[i:i + 500]), qos=1)
                info.wait_for_publish(30)

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


def jobs(database: Path, known: set[str] = frozenset()) -> list[tuple[str, float | None, float]]:
    """The pretix jobs of the bridge's queue, but those ``known``: (nonce, done_at or None, event_at)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as conn:
        rows = conn.execute("SELECT json_extract(body, '$.nonce'), done_at, event_at FROM jobs WHERE sink='pretix'").fetchall()
    return [r for r in rows if r[0] not in known]


def checkin_count(pretix: PretixServer) -> int:
    answer = pretix.admin.get("/events/democon/checkins/?successful=true&page_size=1")
    answer.raise_for_status()
    return int(answer.json()["count"])


class Rig:
    """pretix (seeded with enough tickets), the broker, the bridge, the simulated lanes."""

    def __init__(self, work: Path, tickets: int) -> None:
        started = time.monotonic()
        self.template = PretixTemplate(ensure_pretix(), work / "template", {
            "organizer": "venue", "devices": 1, "events": [{"slug": "democon", "secrets": "pretix_sig1", "orders": tickets}]})
        self.setup_s = time.monotonic() - started
        self.pretix = PretixServer(self.template, work / "pretix")
        self.tickets = [t["secret"] for t in self.pretix.event("democon")["tickets"]]
        self.venue = Venue(work, SigningKey(b"\x01" * 32), lambda *a: None, list(LANES))
        self.config = self.venue.bridge_config([{"slug": "democon", "checkin_list": self.pretix.event("democon")["list"]}],
                                               poll_interval=10.0)  # the shipped default
        token = self.venue.secrets / "pretix-init.token"
        token.write_text(self.pretix.device_token)
        code, out = gate_cli("bridge", "enrol", "--bridge-config", str(self.config), "--url", self.pretix.url,
                             "--token-file", str(token))
        assert code == 0, out
        self.bridge = self.venue.start_bridge(self.config)
        # every ticket's secret pulled (they were all sold before the bridge started)
        wait_until(lambda: ((self.bridge.status().get("pretix") or {}).get("pulls") or {}).get("democon/orders", {}).get("ok"), 600)
        self.lanes = SimulatedLanes(self.venue)
        self.database = self.config.parent / "state" / "bridge.db"

    def take(self, n: int) -> list[str]:
        taken, self.tickets = self.tickets[:n], self.tickets[n:]
        assert len(taken) == n, "not enough tickets seeded"
        return taken

    def close(self) -> None:
        self.lanes.close()
        self.venue.close()
        self.pretix.close()


def bench_lag(rig: Rig, rate: float, seconds: float) -> dict[str, Any]:
    """Check-ins at ``rate`` a second for ``seconds``; each one's lag, passage → accepted."""
    count = max(1, int(rate * seconds))
    tickets = rig.take(count)
    before = checkin_count(rig.pretix)
    known = {r[0] for r in jobs(rig.database)}
    started = time.monotonic()
    for i, secret in enumerate(tickets):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rig.lanes.admit([secret])
    wait_until(lambda: checkin_count(rig.pretix) - before == count and rig.bridge.queue("pretix")["pending"] == 0,
               60 + count / 2)
    lags = sorted(done - event for _, done, event in jobs(rig.database, known) if done is not None)
    return {"rate": rate, "n": count, "p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": lags[-1],
            "actual": count / max(1e-9, time.monotonic() - started)}


def bench_drain(rig: Rig, count: int) -> dict[str, Any]:
    """pretix stopped, ``count`` check-ins queued, pretix started: how fast the queue empties."""
    before = checkin_count(rig.pretix)
    known = {r[0] for r in jobs(rig.database)}
    rig.pretix.stop()
    tickets = rig.take(count)
    for i in range(0, count, 250):
        rig.lanes.admit(tickets[i:i + 250])
    wait_until(lambda: rig.bridge.queue("pretix")["pending"] == count, 120 + count / 50)
    restarted = time.monotonic()
    rig.pretix.start()
    start_s = time.monotonic() - restarted
    wait_until(lambda: rig.bridge.queue("pretix")["pending"] == 0, 300 + count)
    done = sorted(r[1] for r in jobs(rig.database, known) if r[1] is not None)
    span = done[-1] - done[0] if len(done) > 1 else float("nan")
    held = checkin_count(rig.pretix) - before
    return {"n": count, "done": len(done), "span_s": span, "rate": (len(done) - 1) / span if span else float("nan"),
            "held": held, "dead": rig.bridge.queue("pretix")["dead"], "pretix_start_s": start_s}


def attempt(what: str, scenario: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"{what} ...", flush=True)
    started = time.monotonic()
    try:
        result = scenario()
    except Exception as exc:
        traceback.print_exc()
        return {"failed": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    print(f"  {time.monotonic() - started:.0f} s: {result}", flush=True)
    return result


def lag_rows(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        if "failed" in r:
            rows.append(f"| upload lag at {r['rate']:g} check-ins/s | **failed**: {r['failed']} | p99 ≤ 2 s | **not measured** |")
            continue
        rows.append(f"| upload lag, passage at the lane → check-in stored in pretix, {r['rate']:g} check-ins/s over 3 lanes "
                    f"({r['n']:,}; {r['actual']:.1f}/s measured), 1 worker | p50 {r['p50']:.2f} s, p99 {r['p99']:.2f} s, "
                    f"max {r['max']:.2f} s | p99 ≤ 2 s | {verdict(r['p99'] <= LAG_BUDGET)} |")
    return rows


def drain_rows(d: dict[str, Any]) -> list[str]:
    what = "check-ins queued while pretix was stopped, drained once it is back, 1 worker"
    if "failed" in d:
        return [f"| {what} | **failed**: {d['failed']} | all stored once | **not measured** |"]
    figure = f"{d['span_s']:.0f} s, **{d['rate']:.1f}/s**; pretix holds {d['held']:,} new check-ins, {d['dead']} dead"
    ok = verdict(d["held"] == d["n"] and d["dead"] == 0)
    return [f"| {d['n']:,} {what} (first to last accepted) | {figure} | all stored once | {ok} |"]


def run(args: argparse.Namespace) -> int:
    """``scripts/bench --bridge``: the lag at each rate and the drain, then the section printed and
    put into ``args.out`` in place of its old one. Exit 1 when a scenario failed."""
    rates = [float(r) for r in args.bridge_rates.split(",") if r.strip()]
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    needed = sum(max(1, int(r * args.bridge_seconds)) for r in rates) + args.bridge_drain
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gate-bench-bridge-") as tmp:
        print(f"pretix with {needed:,} tickets (migrate and seed) ...", flush=True)
        rig = Rig(Path(tmp), needed)
        try:
            lags = [attempt(f"upload lag at {rate:g}/s", lambda rate=rate: bench_lag(rig, rate, args.bridge_seconds)) | {"rate": rate}
                    for rate in rates]
            drain = attempt(f"drain of {args.bridge_drain:,} queued check-ins",
                            lambda: bench_drain(rig, args.bridge_drain))
        finally:
            rig.close()
    lines = [
        SECTION,
        "",
        (f"Written by `scripts/bench --bridge` on {time.strftime('%Y-%m-%d %H:%M %Z')}; the run took "
         f"{(time.monotonic() - started) / 60:.1f} min (pretix's migrate and seed of {needed:,} tickets: "
         f"{rig.setup_s:.0f} s); load average at the start {load:.1f}."),
        "pretix 2026.8.0 under `runserver` on SQLite in write-ahead-log mode, as the suite runs it (a production",
        "pretix on PostgreSQL is faster); `gate bridge run` as its own process with one upload worker; a real mosquitto with the",
        "shipped ACL. The three lanes are simulated: each seals its admission and passage records with its",
        "roster key as a gate does and publishes them with its own login. Upload lag is a passage's time at",
        "the lane → the moment pretix accepted the check-in (`jobs.done_at - jobs.event_at` in the bridge's",
        "queue), so it includes the bus, the bridge's intake and one `checkinrpc/redeem` each.",
    ]
    table = ["| what | figure | budget | |", "|---|---|---|---|", *lag_rows(lags), *drain_rows(drain)]
    write_section(Path(args.out), "\n".join([*lines, "", *machine(), "", *table, ""]), SECTION)
    return 1 if any("failed" in r for r in (*lags, drain)) else 0


if __name__ == "__main__":  # scripts/bench --bridge is the way; this runs it alone
    import sys

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
