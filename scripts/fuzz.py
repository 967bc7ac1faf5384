"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser target in tests/support/parsers.py.

    scripts/fuzz                      every target, 60 s each
    scripts/fuzz scan bus --seconds 600
    scripts/fuzz --list

Each target runs in its own process with gate's and the drivers' code instrumented, starting
from the target's seeds (valid inputs). libFuzzer stops the run and keeps the input on a crash
(any exception the target lets out: a property broke), on an input that takes longer than
``--timeout`` seconds, or when the process grows past ``--rss-mb``: so time and memory per input
are bounded, not just measured. Crashing inputs are written to the work folder as ``crash-*``;
the corpus it built is kept there for the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+) rss: (\d+)Mb")
PEAK = re.compile(r"stat::peak_rss_mb:\s+(\d+)")


def child(target: str, corpus: Path, seconds: int, timeout: int, rss_mb: int, max_len: int) -> None:
    """In the fuzzing process: instrument gate, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["gate", "drivers"]):
        from tests.support.parsers import Targets

    logging.disable(logging.CRITICAL)  # refusals are logged; libFuzzer's output is the report
    run = Targets().all()[target]
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-timeout={timeout}",
                   f"-rss_limit_mb={rss_mb}", f"-malloc_limit_mb={rss_mb}", f"-max_len={max_len}",
                   f"-artifact_prefix={corpus.parent}/crash-{target}-", "-print_final_stats=1"], run)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="targets to fuzz (default: all)")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--timeout", type=int, default=2, help="seconds one input may take")
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory the fuzzing process may reach")
    parser.add_argument("--max-len", type=int, default=16384, help="longest input tried, in bytes")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".fuzz", help="corpus and crashes (default: .fuzz)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    if args.child:
        child(args.child, args.workdir / args.child, args.seconds, args.timeout, args.rss_mb, args.max_len)
        return 0
    from tests.support.parsers import Targets

    logging.disable(logging.CRITICAL)
    made = Targets()
    seeds = made.seeds()
    made.close()
    if args.list:
        print("\n".join(seeds))
        return 0
    chosen = args.targets or list(seeds)
    unknown = [t for t in chosen if t not in seeds]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(seeds)}")
    results = {}
    for target in chosen:
        corpus = args.workdir / target
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds[target]):
            (corpus / f"seed-{i}").write_bytes(seed)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--child", target, "--seconds", str(args.seconds),
                               "--timeout", str(args.timeout), "--rss-mb", str(args.rss_mb), "--max-len", str(args.max_len),
                               "--workdir", str(args.workdir)], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        output = proc.stdout + proc.stderr
        done = DONE.findall(output)
        peak = PEAK.findall(output)
        result = {"ok": proc.returncode == 0, "seconds": round(time.monotonic() - started, 1)}
        if done:
            runs, cov, ft, corp, rate, rss = map(int, done[-1])
            result.update({"inputs": runs, "coverage_edges": cov, "features": ft, "corpus": corp, "exec_per_s": rate,
                           "rss_mb": int(peak[-1]) if peak else rss})
        if proc.returncode != 0:
            (args.workdir / f"{target}.log").write_text(output)
            result["failure"] = _failure(output)
        results[target] = result
        status = "ok" if result["ok"] else "FAILED: " + result["failure"]
        print(f"{target:<16} {result.get('inputs', 0):>10,} inputs  cov {result.get('coverage_edges', 0):>5}  "
              f"rss {result.get('rss_mb', 0):>4} MB  {status}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"seconds_per_target": args.seconds, "timeout_s": args.timeout,
                                         "rss_limit_mb": args.rss_mb, "targets": results}, indent=2) + "\n")
    failed = [t for t, r in results.items() if not r["ok"]]
    if failed:
        print(f"\nfailed: {', '.join(failed)}; logs and crashing inputs in {args.workdir}", file=sys.stderr)
    return 1 if failed else 0


def _failure(output: str) -> str:
    for pattern in (r"=== Uncaught Python exception: ===\n(.+)", r"ERROR: libFuzzer: (.+)", r"==\d+== ERROR: (.+)"):
        found = re.search(pattern, output)
        if found:
            return found.group(1).strip()[:200]
    return output.strip().splitlines()[-1][:200] if output.strip() else "exited with an error"


if __name__ == "__main__":
    sys.exit(main())
