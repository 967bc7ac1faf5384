"""``scripts/reliability <harness> [options]``: run one harness (or ``all``) and write its report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reliability", description=__doc__)
    sub = parser.add_subparsers(dest="harness", required=True)
    power = sub.add_parser("power-cut", help="kill -9 the daemon at random moments during admissions")
    power.add_argument("--kills", type=int, default=300)
    power.add_argument("--seed", type=int, default=1)
    faults = sub.add_parser("broker-faults", help="stop, kill and restart mosquitto and cut gates off, under load")
    faults.add_argument("--faults", type=int, default=60)
    faults.add_argument("--gates", type=int, default=3)
    faults.add_argument("--seed", type=int, default=1)
    load = sub.add_parser("load", help="100 scans/s through the whole loop, a peer restarted now and then")
    load.add_argument("--minutes", type=float, default=10.0)
    load.add_argument("--rate", type=float, default=100.0)
    load.add_argument("--peer-restart", type=float, default=60.0, help="seconds between restarts of the peer")
    for p in (power, faults, load):
        p.add_argument("--workdir", type=Path, help="keep the lanes' files here (default: a temporary folder)")
        p.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="gate-reliability-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.harness == "power-cut":
            from hwsim.harness import power_cut

            report = power_cut.run(workdir, kills=args.kills, seed=args.seed, progress=True)
        elif args.harness == "broker-faults":
            from hwsim.harness import broker_faults

            report = broker_faults.run(workdir, faults=args.faults, gates=args.gates, seed=args.seed, progress=True)
        else:
            from hwsim.harness import load as load_harness

            report = load_harness.run(workdir, minutes=args.minutes, rate=args.rate, peer_restart=args.peer_restart,
                                      progress=True)
    text = json.dumps(report.as_dict(), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print("HELD" if report.held else f"FAILED: {len(report.failures)} failures", file=sys.stderr)
    return 0 if report.held else 1


if __name__ == "__main__":
    sys.exit(main())
