"""The real serial driver (pyserial) against a simulated scanner on a pseudo-terminal."""

from __future__ import annotations

import queue
import time

import pytest
from hwsim.scanner import SimulatedScanner

from drivers.serial_scanner import LineFramer, SerialScanner
from tests.support.lanes import wait_until


def test_framer_handles_cr_lf_crlf_split_writes_and_overlong():
    framer = LineFramer(max_line=10)
    assert framer.feed(b"ONE\rTWO\nTHREE\r\n") == [b"ONE", b"TWO", b"THREE"]
    assert framer.feed(b"FO") == [] and framer.partial
    assert framer.feed(b"UR\r\n") == [b"FOUR"]
    assert framer.feed(b"X" * 25 + b"\r\nOK\n") == [b"OK"], "overlong line dropped, the next one kept"
    assert framer.overlong == 1


@pytest.fixture
def scanner_pair(tmp_path):
    made = []

    def make(**options):
        sim = SimulatedScanner(tmp_path / "scanner")
        lines: queue.Queue[str] = queue.Queue()
        driver = SerialScanner(str(tmp_path / "scanner"), lines.put, reconnect_interval=0.05, **options)
        driver.start()
        made.append((sim, driver))
        assert driver.connected.wait(5)
        return sim, driver, lines

    yield make
    for sim, driver in made:
        driver.stop()
        sim.close()


def test_lines_arrive_through_the_pty(scanner_pair):
    sim, _, lines = scanner_pair()
    sim.scan("GT1:ABC")
    sim.write(b"SECOND\n")
    sim.write(b"THI")
    time.sleep(0.05)
    sim.write(b"RD\r")
    assert [lines.get(timeout=2) for _ in range(3)] == ["GT1:ABC", "SECOND", "THIRD"]


def test_unterminated_line_is_dropped_or_accepted_as_configured(scanner_pair):
    sim, _, lines = scanner_pair(line_timeout=0.1)
    sim.write(b"NO-TERMINATOR")
    time.sleep(0.3)
    sim.scan("NEXT")
    assert lines.get(timeout=2) == "NEXT"
    sim2, _, lines2 = scanner_pair(line_timeout=0.1, unterminated="accept")
    sim2.write(b"NO-TERMINATOR")
    assert lines2.get(timeout=2) == "NO-TERMINATOR"


def test_garbage_bytes_become_visible_text_not_a_crash(scanner_pair):
    sim, driver, lines = scanner_pair()
    sim.write(b"\xff\xfe\x00\x80\r\n")
    assert "\ufffd" in lines.get(timeout=2)
    sim.scan("STILL-ALIVE")
    assert lines.get(timeout=2) == "STILL-ALIVE"


def test_reconnects_when_the_scanner_is_unplugged_and_plugged_back(scanner_pair):
    sim, driver, lines = scanner_pair()
    sim.unplug()
    wait_until(lambda: not driver.connected.is_set())
    time.sleep(0.2)  # a few failed reopen attempts while the device is gone
    sim.plug()
    assert driver.connected.wait(5)
    sim.scan("AFTER-REPLUG")
    assert lines.get(timeout=2) == "AFTER-REPLUG"
