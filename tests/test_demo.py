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
