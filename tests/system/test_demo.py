"""scripts/demo's lane: the real daemon process, the scripted crowd, every outcome as expected."""

from __future__ import annotations

import subprocess
import sys
import time


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


def test_venue_demo_stays_up_with_its_dashboard_showing_the_three_lanes_until_enter():
    """What a person does with ``./scripts/demo --venue`` at a terminal: after the story, open the
    printed URL, log in with the printed login and see the three lanes live; Enter ends it."""
    import queue
    import re
    import threading

    import httpx
    import pytest
    from hwsim.broker import mosquitto_binary

    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (scripts/test installs it)")
    demo = subprocess.Popen([sys.executable, "-m", "hwsim.demo", "--venue", "--quick", "--stay"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)  # the demo ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out: list[str] = []
    try:
        while not out or not out[-1].startswith("press Enter"):
            line = lines.get(timeout=240)
            assert line is not None, "the demo ended without staying up:\n" + "".join(out)
            out.append(line)
        url, user, password = re.search(r"stay up: open (\S+) \(user (\S+), password (\S+)\)", "".join(out)).groups()
        with httpx.Client(base_url=url.rstrip("/"), timeout=10) as browser:
            assert browser.post("/login", data={"name": user, "password": password}).status_code == 303
            deadline = time.monotonic() + 30
            while True:  # the lanes' statuses come every second; the page's state is read as the page reads it
                lanes = browser.get("/api/state").json()["lanes"]
                shown = {lane["gate"]: (lane["online"], lane["entries"]) for lane in lanes}
                entries = sum(n for _, n in shown.values())
                if all(online for online, _ in shown.values()) and entries == 7 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert sorted(shown) == ["gate-1", "gate-2", "gate-3"] and all(online for online, _ in shown.values()), shown
        assert entries == 7, shown  # the 7 people let in walked through: the ledgers' 14 records are 7 admissions, 7 passages
        assert demo.poll() is None, "the demo ended before Enter"
        demo.stdin.write("\n")
        demo.stdin.flush()
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(10)
    out += [line for line in iter(lines.get_nowait, None)]
    assert "every person got the outcome the venue should give" in "".join(out)
