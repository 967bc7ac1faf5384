"""Zone capacity's costs (docs/architecture.md, "Zone capacity"), in-process on real SQLite:

- what a decision pays for its zone (``ZoneWatch.state``: the capacity, the zone's occupancy, the
  cut) on a ledger of ``--records`` records of ``--gates`` gates, p50 and p99;
- what the occupancy triggers cost ``Ledger.merge`` (peers' records, in batches of 500): records/s
  with the triggers and with them dropped, on the same records (best of ``rounds``, alternated).

    .venv/bin/python scripts/bench_zones.py --records 100000

Prints one JSON line; ``bench_zones`` returns the same dict for scripts/bench.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwsim.timing import percentile

from gate.lane.zones import ZoneWatch
from gate.store import HeldMessage, RosterRow, Store
from gate.store.ledger import ADMISSION, FREE_EXIT, PASSAGE, Record

ME = "lane-0"


def peer_records(gates: int, count: int, epoch: str = "e1") -> list[Record]:
    """``count`` records of ``gates`` peers: admissions in, their passages, and a free exit now and then."""
    records, seqs = [], [0] * gates
    for i in range(count):
        g = i % gates
        seqs[g] += 1
        seq, origin = seqs[g], f"lane-{g + 1}"
        if seq % 2 == 1:
            records.append(Record(origin, seq, ADMISSION, 1.0 + i, ticket_key=f"{i:064x}", format="gt1", direction="in",
                                  epoch=epoch))
        elif seq % 10 == 0:
            records.append(Record(origin, seq, FREE_EXIT, 1.0 + i, direction="out", epoch=epoch))
        else:
            records.append(Record(origin, seq, PASSAGE, 1.0 + i, ticket_key=f"{i - gates:064x}", direction="in",
                                  ref_origin=origin, ref_seq=seq - 1, epoch=epoch, ref_epoch=epoch))
    return records


def merge_rate(path: Path, records: list[Record], triggers: bool) -> float:
    store = Store(path, ME)
    try:
        if not triggers:
            store.db.conn.execute("DROP TRIGGER occupancy_on_record")
        started = time.perf_counter()
        for i in range(0, len(records), 500):
            store.ledger.merge(records[i:i + 500], 0.0)
        return len(records) / (time.perf_counter() - started)
    finally:
        store.close()


def bench_zones(workdir: Path, records: int, gates: int = 10, decisions: int = 2000, rounds: int = 3) -> dict[str, Any]:
    made = peer_records(gates, records)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for n in range(rounds):  # alternated, best of each: a loaded machine's noise is one-sided
        for triggers in (False, True):
            path = workdir / f"{'with' if triggers else 'without'}-{n}.db"
            rates[triggers].append(merge_rate(path, made, triggers))
            if n < rounds - 1 or not triggers:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    with_triggers, without = max(rates[True]), max(rates[False])
    store = Store(workdir / f"with-{rounds - 1}.db", ME)
    try:
        roster = [RosterRow(f"lane-{g}", b"\0" * 32, "north", ("in", "out"), False) for g in range(gates + 1)]
        store.install_bundle(b"", [], HeldMessage(1, 0, 0.0, "b", 0, 0, 0), 0.0, lambda _: None, roster=roster,
                             zones={"north": records})
        watch = ZoneWatch(store, ME)
        watch.heard = lambda: {f"lane-{g + 1}" for g in range(gates)}
        times = []
        for _ in range(decisions):
            started = time.perf_counter()
            state = watch.state()
            times.append((time.perf_counter() - started) * 1000)
        assert state is not None
        held = store.ledger.count()
    finally:
        store.close()
    return {"records": held, "gates": gates, "occupancy": state.occupancy, "zone_state_ms_p50": round(percentile(times, 50), 4),
            "zone_state_ms_p99": round(percentile(times, 99), 4), "merge_per_s_with_triggers": round(with_triggers),
            "merge_per_s_without": round(without), "trigger_cost_percent": round(100 * (without / with_triggers - 1), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--gates", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(bench_zones(Path(folder), args.records, args.gates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
