"""Reader status, as a technician reads it on ``gate status``: each reader says when it last did
its work (the scanner's last line, the NFC reader's last poll) and the last thing that went wrong,
in words that hold no ticket, within 80 columns."""

from __future__ import annotations

import json
import subprocess
import sys

from hwsim.phone import GT1Phone

from tests.support.lanes import wait_until, write_config
from tests.support.nfc import free_udp_port


def gate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gate", *args], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run.stdout


def reader_lines(screen: str) -> list[str]:
    lines = screen.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("READERS"))
    end = next(n for n in range(first + 1, len(lines)) if not lines[n].startswith(" " * 9))
    return lines[first:end]


def test_status_says_when_the_scanner_last_read_and_why_it_is_down(lane, tickets, tmp_path, config_data) -> None:
    config = write_config(tmp_path / "gate.toml", config_data)
    ticket = tickets.static()
    assert lane.present(ticket)["accepted"]
    scanner = json.loads(gate("status", "--json", "--config", str(config)))["readers"]["scanner"]
    assert scanner["connected"] and scanner["last_error"] is None
    assert scanner["last_activity_age_s"] is not None and scanner["last_activity_age_s"] < 60

    lane.scanner.close()  # the pty goes away, as a USB scanner pulled out
    wait_until(lambda: (lane.daemon.readers.status()["scanner"]["last_error"] or "").startswith("cannot open"), 10)
    screen = gate("status", "--once", "--config", str(config))
    shown = reader_lines(screen)
    assert shown[0].startswith("READERS  scanner DOWN, last line") and "ago: cannot open: No such file or directory (ENOENT)" in shown[1], screen
    assert ticket[4:20] not in screen
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_status_shows_the_nfc_reader_polling_and_its_last_failed_tap(start_lane, config_data, tmp_path, tickets, holder) -> None:
    port = free_udp_port()
    config_data["nfc"] = {"device": f"udp:localhost:{port}", "exchange_timeout": 0.5}
    config = write_config(tmp_path / "gate.toml", config_data)
    lane = start_lane(config_data)
    cose = tickets.cose(holder_key=bytes(holder.verify_key))
    assert GT1Phone(port, cose, holder, behaviour="wrong_status").present(0.3, timeout=20)
    wait_until(lambda: lane.daemon.readers.nfc.failed_taps == 1, 10)
    status = lane.daemon.readers.status()["nfc"]
    assert status["last_error"] == "tap refused: phone refused the challenge (status 6985)"
    screen = gate("status", "--once", "--config", str(config))
    nfc = next(line for line in reader_lines(screen) if "nfc" in line)
    assert "nfc up, last poll" in nfc and "1 taps (1 failed)" in nfc, screen
    assert "ago: tap refused: phone refused the challenge (status 6985)" in screen, screen
    assert max(len(line) for line in screen.splitlines()) <= 80
