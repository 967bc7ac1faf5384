"""At the lane: the clock guard, ``gate status`` (the live view), ``gate doctor`` with each check
failing on purpose in the simulator, ``gate safe`` and the metrics endpoint."""

from __future__ import annotations

import json
import os
import queue
import signal
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hwsim.broker import Mosquitto, free_port, mosquitto_binary
from nacl.signing import SigningKey

from gate import policy
from gate.decision import Claims, Decision, Proof, Reason
from gate.formats import gt1
from tests.support.lanes import wait_until, write_config

NOW = int(time.time())


def gate(*args: str, rc: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, timeout=timeout)
    if rc is not None:
        assert run.returncode == rc, (run.returncode, run.stdout, run.stderr)
    return run


def doctor(config: Path, rc: int, *extra: str) -> dict[str, dict[str, str]]:
    run = gate("doctor", "--json", "--config", str(config), *extra, rc=rc)
    return {check["name"]: check for check in json.loads(run.stdout)["checks"]}


def rotating(tickets: Any, holder: SigningKey) -> str:
    """The phone's code drawn now."""
    return gt1.encode_rotating(tickets.cose(holder_key=bytes(holder.verify_key)), holder, int(time.time()))


# --- the clock guard ------------------------------------------------------------------------


def test_what_depends_on_the_time() -> None:
    plain = Claims("gt1", "k")
    windowed = Claims("gt1", "k", expires=NOW + 60)
    proved = Claims("totp", "k", proof=Proof("totp", NOW, "p"))
    assert not policy.depends_on_time(Decision(True, Reason.OK), plain)
    assert policy.depends_on_time(Decision(True, Reason.OK), windowed)
    assert policy.depends_on_time(Decision(True, Reason.OK), proved)
    assert policy.depends_on_time(Decision.deny(Reason.EXPIRED), None)
    assert policy.depends_on_time(Decision.deny(Reason.STALE_PROOF), None)
    assert policy.depends_on_time(Decision.deny(Reason.BAD_SIGNATURE, format_name="totp"), None)
    assert not policy.depends_on_time(Decision.deny(Reason.BAD_SIGNATURE, format_name="gt1"), None)
    assert not policy.depends_on_time(Decision.deny(Reason.ALREADY_USED), windowed)


def test_unsynchronized_clock_refuses_what_depends_on_time(start_lane, config_data, tickets, holder) -> None:
    config_data["simulator"]["clock_synchronized"] = False
    lane = start_lane(config_data)
    plain = tickets.static()
    assert lane.present(plain)["reason"] == "ok", "a ticket without a window does not depend on the clock"
    lane.idle()
    assert lane.present(plain, walks=None)["reason"] == "already_used", "facts stand whatever the clock says"
    lane.idle()
    windowed = tickets.static(not_before=NOW - 60, expires=NOW + 3600)
    decision = lane.present(windowed, walks=None)
    assert decision["reason"] == "clock_unsynced" and not decision["accepted"]
    lane.idle()
    code = rotating(tickets, holder)
    assert lane.present(code, walks=None)["reason"] == "clock_unsynced"
    lane.idle()
    assert lane.pulses("unlock_in") == 1, "only the plain ticket opened"
    assert len(lane.records("admission")) == 1

    lane.daemon.hardware.clock.synchronized_now = True  # NTP catches up
    wait_until(lambda: lane.daemon.engine.clock_synchronized, 3)
    assert lane.present(windowed)["reason"] == "ok"
    lane.idle()
    assert lane.present(rotating(tickets, holder))["reason"] == "ok"


def test_admit_on_an_unsynchronized_clock_is_marked(start_lane, config_data, tickets) -> None:
    config_data["simulator"]["clock_synchronized"] = False
    config_data["clock"] = {"unsynchronized": "admit"}
    lane = start_lane(config_data)
    decision = lane.present(tickets.static(expires=NOW + 3600))
    assert decision["accepted"] and decision["details"]["clock"] == "unsynchronized"


def test_clock_lost_while_running_is_said_loudly(lane, tickets, caplog) -> None:
    events: list[dict[str, Any]] = []
    lane.daemon.loop.listeners.append(lambda kind, payload: events.append(payload) if kind == "clock" else None)
    lane.daemon.hardware.clock.synchronized_now = False
    wait_until(lambda: events, 3)
    assert events[0]["synchronized"] is False and events[0]["guard"] == "refuse"
    assert lane.present(tickets.static(expires=NOW + 3600), walks=None)["reason"] == "clock_unsynced"
    assert any("clock NOT synchronized" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_gate_verify_applies_the_guard_unless_told_the_moment(tmp_path, config_data, tickets) -> None:
    del config_data["scanner"]
    config_data["simulator"]["clock_synchronized"] = False
    config = str(write_config(tmp_path / "gate.toml", config_data))
    windowed = tickets.static(expires=NOW + 3600)
    run = gate("verify", "--dry-run", "--config", config, windowed, rc=1)
    assert json.loads(run.stdout)["reason"] == "clock_unsynced"
    assert json.loads(gate("verify", "--dry-run", "--at", str(NOW), "--config", config, windowed, rc=0).stdout)["accepted"]


# --- gate status ----------------------------------------------------------------------------


def status_lines(path: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        buffer = b""
        while buffer.count(b"\n") < count:
            buffer += sock.recv(65536)
    return [json.loads(line) for line in buffer.split(b"\n")[:count]]


def test_status_shows_the_lane_and_its_last_decisions(lane, tickets, tmp_path, config_data) -> None:
    config = write_config(tmp_path / "gate.toml", config_data)
    ticket = tickets.static()
    lane.present(ticket)
    lane.idle()
    lane.present(ticket, walks=None)
    lane.present("GT1:not-a-ticket", walks=None)
    lane.idle()
    screen = gate("status", "--once", "--config", str(config), rc=0).stdout
    assert "lane-1 at test-venue" in screen
    assert "MODE     NORMAL" in screen and "synchronized" in screen
    decisions = [line for line in screen.splitlines() if "OPEN" in line or "DENIED" in line]
    assert [d.split()[2] for d in decisions] == ["unreadable", "already_used", "ok"], screen
    assert ticket[4:20] not in screen, "no ticket text on the screen"

    snapshot = json.loads(gate("status", "--json", "--config", str(config), rc=0).stdout)
    assert snapshot["counters"] == {"accepted": 1, "passages": 1, "denied.already_used": 1, "denied.unreadable": 1}
    assert snapshot["readers"]["scanner"]["connected"] is True

    lane.daemon.hardware.clock.synchronized_now = False
    wait_until(lambda: not lane.daemon.engine.clock_synchronized, 3)
    assert "NOT SYNCHRONIZED: time-dependent tickets REFUSED" in gate("status", "--once", "--config", str(config), rc=0).stdout


def test_live_status_fits_80_columns_and_follows_the_lane_through_a_restart(start_lane, tickets, tmp_path, config_data) -> None:
    config = write_config(tmp_path / "gate.toml", config_data)
    lane = start_lane(config_data)
    lane.present(tickets.static())
    screen = subprocess.Popen([sys.executable, "-m", "gate", "status", "--config", str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in screen.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []

    def shows(text: str) -> None:
        deadline = time.monotonic() + 20
        while text not in (seen[-1] if seen else ""):
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"gate status did not show {text!r}; it showed: {seen[-15:]}") from None

    try:
        shows("OPEN")
        lane.stop()  # systemctl restart gate
        shows("reconnecting")
        start_lane(config_data).present("junk", walks=None)
        shows("unknown_format")
        assert screen.poll() is None, "gate status is still running"
    finally:
        screen.terminate()
        screen.wait(10)
    assert max(len(line.replace("\x1b[H\x1b[2J", "")) for line in seen) <= 80


def test_status_streams_decisions_as_they_happen(lane, tickets, config_data) -> None:
    path = config_data["status"]["socket"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        time.sleep(0.1)
        lane.present(tickets.static())
        buffer = b""
        while b'"event":"decision"' not in buffer:
            buffer += sock.recv(65536)
    first = json.loads(buffer.split(b"\n")[0])
    assert first["event"] == "status" and first["mode"] == "normal"
    decision = next(json.loads(l) for l in buffer.split(b"\n") if b'"event":"decision"' in l)
    assert decision["accepted"] and decision["reason"] == "ok"


def test_status_without_a_lane_says_so(tmp_path, config_data) -> None:
    config = write_config(tmp_path / "gate.toml", config_data)
    run = gate("status", "--once", "--config", str(config), rc=1)
    assert "no lane answers" in run.stderr


def test_status_says_when_the_loop_hangs(lane, config_data) -> None:
    release = lane.daemon.loop.post  # a stuck event handler: the loop stops answering
    import threading

    stuck = threading.Event()
    from gate.lane.loop import Call

    release(Call(lambda: stuck.wait(5), threading.Event(), []))
    try:
        status = status_lines(config_data["status"]["socket"], 1)[0]
        assert "not answering" in status["problem"]
    finally:
        stuck.set()


# --- gate doctor ----------------------------------------------------------------------------


def test_doctor_all_good_beside_a_running_lane(lane, tmp_path, config_data) -> None:
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 0)
    assert checks["lane"]["result"] == "ok" and "running" in checks["lane"]["detail"]
    assert checks["scanner"]["result"] == "ok" and "open in the lane" in checks["scanner"]["detail"]
    assert checks["clock"]["result"] == "ok"
    assert checks["database"]["result"] == "ok" and checks["trust"]["result"] == "ok"
    assert checks["broker"]["result"] == "skip"


def test_a_ledger_left_to_root_is_named_an_ownership_problem_not_a_crash(tmp_path, config_data, monkeypatch, caplog) -> None:
    """After `sudo gate bundle load` before the first start, the lane (user gate) cannot open
    its ledger: doctor names the owner and the chown, the lane exits 2 saying so (no restart
    loop, no traceback), and nobody is sent to the corrupt-database recovery."""
    from gate import config as config_module
    from gate.daemon import Daemon
    from gate.field.doctor import Doctor
    from gate.store import Store

    Store(Path(config_data["gate"]["state_dir"]) / "gate.db", "lane-1").close()  # made by root
    config = config_module.parse(config_data, "gate.toml")
    doctor = Doctor(config)
    doctor.service_user = "nobody"  # the lane's user, not the files' owner
    check = doctor.check_database()
    assert check.result == "fail" and "not owned by nobody" in check.detail
    assert check.fix.startswith("sudo chown -R nobody:nobody") and ".recover" not in check.fix

    monkeypatch.setattr(os, "geteuid", lambda: 65534)  # the lane runs as that user
    assert Daemon(config).run() == 2
    assert any("the ledger cannot be opened" in r.getMessage() and "chown" in r.getMessage() for r in caplog.records)


def test_doctor_missing_serial_device(tmp_path, config_data) -> None:
    config_data["scanner"]["port"] = str(tmp_path / "no-scanner")
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
    assert checks["lane"]["result"] == "warn", "not running: devices are checked directly"
    assert checks["scanner"]["result"] == "fail" and "no such device" in checks["scanner"]["detail"]
    assert "/dev/serial/by-id" in checks["scanner"]["fix"] and "udev rule" in checks["scanner"]["more"]


def test_doctor_scanner_unplugged_from_a_running_lane(lane, tmp_path, config_data) -> None:
    lane.scanner.close()  # the pty goes away, as a USB scanner pulled out
    wait_until(lambda: not lane.daemon.readers.scanner.connected.is_set(), 5)
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
    assert checks["scanner"]["result"] == "fail" and "cannot open" in checks["scanner"]["detail"]


def test_doctor_human_table(tmp_path, config_data) -> None:
    config_data["scanner"]["port"] = str(tmp_path / "no-scanner")
    run = gate("doctor", "--config", str(write_config(tmp_path / "gate.toml", config_data)), rc=1)
    assert "scanner   FAIL  " in run.stdout and "→ plug the scanner in" in run.stdout
    assert run.stdout.rstrip().endswith("1 failed, 2 to look at")


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")
def test_doctor_broker_down_and_bad_credentials(tmp_path, config_data) -> None:
    del config_data["scanner"]
    config_data["sync"] = {"host": "127.0.0.1", "port": free_port()}
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
    assert checks["broker"]["result"] == "fail" and "cannot connect" in checks["broker"]["detail"]

    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "lane-1", "right"], check=True)
    broker = Mosquitto(tmp_path / "broker", password_file=passwords)
    try:
        (tmp_path / "lane.pw").write_text("wrong\n")
        config_data["sync"] = broker.sync_table(password_file="lane.pw")
        checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
        assert checks["broker"]["result"] == "fail" and "Not authorized" in checks["broker"]["detail"]
        (tmp_path / "lane.pw").write_text("right\n")
        checks = doctor(write_config(tmp_path / "gate.toml", config_data), 0)
        assert checks["broker"]["result"] == "ok" and "as lane-1" in checks["broker"]["detail"]
    finally:
        broker.stop()


def test_doctor_clock_unsynchronized(start_lane, tmp_path, config_data) -> None:
    del config_data["scanner"]
    config_data["simulator"]["clock_synchronized"] = False
    config = write_config(tmp_path / "gate.toml", config_data)
    checks = doctor(config, 1)
    assert checks["clock"]["result"] == "fail" and "NOT synchronized (the simulator's view)" in checks["clock"]["detail"]

    config_data["simulator"]["clock_synchronized"] = True
    lane = start_lane(config_data)
    config = write_config(tmp_path / "gate.toml", config_data)
    assert doctor(config, 0)["clock"]["result"] == "ok"
    lane.daemon.hardware.clock.synchronized_now = False
    wait_until(lambda: not lane.daemon.engine.clock_synchronized, 3)
    checks = doctor(config, 1)
    assert "NOT synchronized (the lane's view)" in checks["clock"]["detail"] and "REFUSED" in checks["clock"]["detail"]


def test_doctor_corrupt_database(lane, tmp_path, config_data, tickets) -> None:
    for _ in range(30):
        lane.present(tickets.static(), walks=None)
    lane.stop()
    database = Path(config_data["gate"]["state_dir"]) / "gate.db"
    data = bytearray(database.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096:3 * 4096] = b"\x5a" * 4096  # a page of the card gone bad
    database.write_bytes(bytes(data))
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
    assert checks["database"]["result"] == "fail", checks["database"]
    assert ".recover" in checks["database"]["fix"]


def test_doctor_bad_config_and_missing_keys(tmp_path, config_data) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[gate]\nid = "lane-1"\nvenu = "x"\n')
    checks = doctor(bad, 1)
    assert checks["config"]["result"] == "fail" and "gate.venu: unknown key" in checks["config"]["detail"]

    del config_data["scanner"]
    config_data["policy"]["formats"] = ["gt1", "totp"]
    checks = doctor(write_config(tmp_path / "gate.toml", config_data), 1)
    assert checks["trust"]["result"] == "fail" and "no keys for totp" in checks["trust"]["detail"]


def test_doctor_click_and_safe_with_the_lane_stopped(tmp_path, config_data) -> None:
    del config_data["scanner"]
    config = write_config(tmp_path / "gate.toml", config_data)
    checks = doctor(config, 0, "--click")
    assert checks["relay click"]["result"] == "ok" and "unlock_in, unlock_out" in checks["relay click"]["detail"]
    assert "released, red on" in gate("safe", "--config", str(config), rc=0).stdout


# --- metrics --------------------------------------------------------------------------------


def test_metrics_on_localhost(start_lane, config_data, tickets) -> None:
    port = free_port()
    config_data["status"]["metrics"] = f"127.0.0.1:{port}"
    lane = start_lane(config_data)
    lane.present(tickets.static())
    lane.idle()
    lane.present("junk", walks=None)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'gate_decisions_total{reason="ok"} 1.0' in text
    assert 'gate_decisions_total{reason="unknown_format"} 1.0' in text
    assert "gate_clock_synchronized 1.0" in text and 'gate_mode{mode="normal"} 1.0' in text
    assert "gate_decision_latency_seconds_count 2.0" in text
    assert 'gate_reader_up{reader="scanner"} 1.0' in text


def test_status_and_metrics_show_the_signed_bundle_held(start_lane, tmp_path, config_data) -> None:
    admin = json.loads(gate("keygen", "--out", str(tmp_path / "admin.key"), rc=0).stdout)
    config_data["trust"]["admin_key"] = admin["public_key"]
    port = free_port()
    config_data["status"]["metrics"] = f"127.0.0.1:{port}"
    config = str(write_config(tmp_path / "gate.toml", config_data))
    start_lane(config_data)
    gate("bundle", "make", "--config", config, "--version", "7", "--revoke", "key:" + "ab" * 32, "--out", str(tmp_path / "b.json"), rc=0)
    gate("bundle", "sign", str(tmp_path / "b.json"), "--key", str(tmp_path / "admin.key"), "--out", str(tmp_path / "s.json"), rc=0)
    gate("bundle", "load", "--config", config, str(tmp_path / "s.json"), rc=0)
    shown = gate("status", "--once", "--config", config, rc=0).stdout
    assert re.search(r"BUNDLE   version 7, signed \d+ s ago, 1 revoked", shown), shown
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "gate_bundle_version 7.0" in metrics


def test_metrics_scraped_without_pause_read_the_decision_loop_once_a_second(start_lane, config_data, monkeypatch) -> None:
    port = free_port()
    config_data["status"]["metrics"] = f"127.0.0.1:{port}"
    lane = start_lane(config_data)
    readings: list[float] = []
    real = lane.daemon.view._on_loop
    monkeypatch.setattr(lane.daemon.view, "_on_loop", lambda: readings.append(time.monotonic()) or real())
    started = time.monotonic()
    for _ in range(300):  # a misconfigured Prometheus, or someone's loop of curl
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    elapsed = time.monotonic() - started
    assert len(readings) <= elapsed / 1.0 + 2, f"{len(readings)} readings on the loop in {elapsed:.1f} s"


def test_a_watchdog_kill_leaves_every_thread_s_stack_in_the_journal(tmp_path, config_data) -> None:
    config = write_config(tmp_path / "gate.toml", config_data)
    lane = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: Path(config_data["status"]["socket"]).exists() or lane.poll() is not None, 30)
        lane.send_signal(signal.SIGABRT)  # what systemd's WatchdogSec does to a hung lane
        _, journal = lane.communicate(timeout=30)
    finally:
        if lane.poll() is None:
            lane.kill()
    assert "Fatal Python error: Aborted" in journal and "gate/lane/loop.py" in journal, journal[-2000:]  # the decision loop


def test_metrics_refuse_the_venue_network(tmp_path, config_data) -> None:
    config_data["status"]["metrics"] = "0.0.0.0:9464"
    run = gate("check-config", "--config", str(write_config(tmp_path / "gate.toml", config_data)), rc=2)
    assert "status.metrics: a loopback address" in run.stderr


# --- logs in journald -----------------------------------------------------------------------


def test_journald_gets_priorities_and_no_second_timestamp(tmp_path, monkeypatch) -> None:
    import logging
    import os

    from gate.field import logsetup

    out = open(tmp_path / "journal", "w+")
    st = os.fstat(out.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    logsetup.setup("info", stream=out)
    log = logging.getLogger("gate.test")
    log.info("decision accepted=True reason=ok")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("decision failed reason=error")
    log.debug("not shown at info")
    out.seek(0)
    lines = out.read().splitlines()
    assert lines[0] == "<6>INFO gate.test: decision accepted=True reason=ok"
    assert lines[1] == "<3>ERROR gate.test: decision failed reason=error"
    assert all(line.startswith("<3>") for line in lines[2:]) and "ValueError: boom" in lines[-1], "the traceback stays an error"

    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # someone else's journal stream: a terminal here
    other = open(tmp_path / "terminal", "w+")
    logsetup.setup("info", stream=other)
    log.warning("fire alarm active=True")
    other.seek(0)
    line = other.read().strip()
    assert line[:4].isdigit() and line.endswith("WARNING gate.test: fire alarm active=True")
    logsetup.setup("info")


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")
def test_status_shows_the_venue_bus(start_lane, tmp_path, config_data, broker) -> None:
    config_data["sync"] = broker.sync_table()
    lane = start_lane(config_data)
    wait_until(lambda: lane.daemon.sync.connected, 10)
    config = str(write_config(tmp_path / "gate.toml", config_data))
    sync = json.loads(gate("status", "--json", "--config", config, rc=0).stdout)["sync"]
    assert sync["connected"] is True and sync["broker"] == f"127.0.0.1:{broker.port}"
    assert sync["outbox"] == 0 and sync["conflicts"] == 0 and sync["counters"]["merged"] == 0
    assert f"SYNC     127.0.0.1:{broker.port} connected; outbox 0, merged 0, conflicts 0" in gate(
        "status", "--once", "--config", config, rc=0).stdout
