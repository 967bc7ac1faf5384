"""scripts/bench runs through, small: a bench that crashes is found here, not by the next person
who measures (its figures are BENCHMARKS.md's, never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hwsim.broker import mosquitto_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")
def test_the_bench_runs_through_on_small_counts(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    run = subprocess.run(
        [sys.executable, "scripts/bench.py", "--verifications", "500", "--scans", "20", "--starts", "2", "--backlog", "200",
         "--revocations", "2000", "--deltas", "3", "--readers", "6", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    text = out.read_text()
    assert "GT1 static verifications" in text and "admission at gate A → merged at gate B" in text
