"""scripts/demo's lane: the real daemon process, the scripted crowd, every outcome as expected."""

from __future__ import annotations

import subprocess
import sys


def test_demo_crowd_gets_the_outcomes_the_lane_should_give():
    run = subprocess.run([sys.executable, "-m", "hwsim.demo", "--quick"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "every person got the outcome the lane should give" in out
    assert "Cleo, screenshot of Ada's ticket" in out and "reason=already_used" in out
    assert "forced_passage reported" in out
    assert "outputs now: unlock_in ○  green ○  red ●" in out


def test_demo_crowd_through_the_simulated_camera_gets_the_same_outcomes():
    run = subprocess.run([sys.executable, "-m", "hwsim.demo", "--quick", "--camera"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tickets go to the simulated camera" in run.stdout
    assert "every person got the outcome the lane should give" in run.stdout
    assert "Cleo, screenshot of Ada's ticket" in run.stdout and "reason=already_used" in run.stdout


def test_venue_demo_copies_are_refused_at_other_gates_and_the_partition_conflict_is_reported():
    from hwsim.broker import mosquitto_binary

    if mosquitto_binary() is None:
        import pytest

        pytest.skip("mosquitto not installed (scripts/test installs it)")
    run = subprocess.run([sys.executable, "-m", "hwsim.demo", "--venue", "--quick"], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "every person got the outcome the venue should give" in out
    assert "ticket 1, a screenshot of it                 gate-2: refused  reason=already_used" in out
    assert "gate-1 reports conflicts=1" in out and "gate-2 reports conflicts=1" in out
    assert "every gate's ledger holds the same 14 records" in out
