"""Short runs of the reliability harnesses (scripts/reliability; the full runs' figures are in
RELIABILITY.md): power cuts, broker faults and sustained load against real ``gate run``
processes, a real mosquitto and simulated hardware; and a short coverage-guided fuzz run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hwsim.broker import mosquitto_binary

ROOT = Path(__file__).resolve().parents[2]

needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed (scripts/test installs it)")


@needs_broker
def test_power_cuts_lose_nothing(tmp_path):
    from hwsim.harness import power_cut

    report = power_cut.run(tmp_path, kills=12, seed=7)
    assert report.held, report.failures
    figures = report.figures
    assert figures["killed_while_admitting"] >= 8 and figures["admissions_relay_moved"] >= 20, figures
    assert figures["records_lost"] == 0 and figures["seq_clashes_on_bus"] == 0 and figures["integrity_failures"] == 0
    assert figures["records_on_bus"] == figures["ledger_records"]
    assert set(figures["rechecked_after_kill"]) <= {"already_used"}


@needs_broker
def test_broker_faults_and_partitions_converge(tmp_path):
    from hwsim.harness import broker_faults

    report = broker_faults.run(tmp_path, faults=4, gates=3, seed=3)
    assert report.held, report.failures
    figures = report.figures
    assert figures["decisions_during_faults"] > 0, figures  # the lanes kept deciding while cut off
    assert figures["converged_after_s"] is not None
    assert "fresh_error" not in figures["outcomes"]


@needs_broker
def test_load_drops_no_scan(tmp_path):
    from hwsim.harness import load

    report = load.run(tmp_path, minutes=0.25, rate=100, peer_restart=6)
    assert report.held, report.failures
    figures = report.figures
    # Every scan decided, unless the machine's disk stalled longer than the line of waiting scans
    # holds (the lane waits for an admission's fsync, by design; the harness's own probe saw it).
    stalls = figures["stalls"]
    assert figures["scans_dropped"] == 0 or stalls["long_enough_to_drop_not_the_disk"] == 0 < stalls["long_enough_to_drop"], figures
    assert figures["decisions"] + figures["scans_dropped"] == figures["scans_sent"] >= 1000
    assert sum(figures["peer_restarts"].values()) >= 1
    assert figures["ledgers_agree"]
    assert not any(key.split(":")[-1] == "error" for key in figures["outcomes"]), figures["outcomes"]
    # The timeline that puts latency next to the machine's CPU steal covers the decisions.
    timeline = figures["timeline"]
    assert timeline and sum(row["decisions"] for row in timeline) >= 500, timeline
    assert all(row["rss_kib"] and 0 <= row["steal_pct"] <= 100 and row["loop_p99_ms"] for row in timeline), timeline


def test_fuzzer_runs_every_target_briefly(tmp_path):
    pytest.importorskip("atheris", reason="atheris (the fuzz extra) is not installed: pip install -e .[fuzz]")
    out = tmp_path / "fuzz.json"
    done = subprocess.run([sys.executable, "scripts/fuzz.py", "--seconds", "2", "--workdir", str(tmp_path), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["targets"]
    assert {"scan", "nfc", "scanner_bytes", "bus", "signed_message", "trust_document", "config", "gt1_cose"} <= set(results)
    assert all(r["ok"] and r["inputs"] > 100 for r in results.values()), results
