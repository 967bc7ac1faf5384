"""Security: the lane's files are its user's alone, no secret and no raw ticket secret reaches a
log line, the venue bus or the status socket, secrets are compared in constant time, and every
input has a size limit that refuses it with a clear error before it is parsed.

(The ACL is proved in tests/sync/test_sync.py and tests/sync/test_sync_trust.py: one gate cannot write
into another's ledger, only the venue admin sends bundles and commands; signed bundles and
commands in tests/trust/test_bundles.py and tests/sync/test_sync_trust.py.)
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary
from hwsim.control import ControlClient
from hwsim.scanner import SimulatedScanner

from tests.support.lanes import base_config, wait_until, write_config
from tests.support.parsers import ISSUER, NOW, every_format_trust_and_scans
from tests.support.venue import KEYS, venue_acl

PASSWORD = "Xq7-lane-password-9f2c81d7e4"


def _secret_pieces(secret: str, width: int = 20) -> set[str]:
    """The secret and every ``width``-character piece of it (step 4): a log line that carries
    part of a ticket's text is a leak too."""
    pieces = {secret}
    for start in range(0, max(1, len(secret) - width + 1), 4):
        piece = secret[start : start + width]
        if len(set(piece)) > 3:  # "0000…" is not evidence of anything
            pieces.add(piece)
    return pieces


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_no_secret_in_logs_on_the_bus_or_on_the_status_socket(tmp_path):
    """A lane at debug log level, on a broker with the shipped ACL, reads a valid ticket of
    every format and a damaged copy of each. Nothing of their text, the broker password or the
    trust documents' secrets appears in its log, on any topic, or on the status socket."""
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "lane-1", PASSWORD], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "venue-admin", "admin-pw"], check=True)
    broker = Mosquitto(tmp_path / "broker", password_file=passwords, acl_file=venue_acl(tmp_path))
    docs, scans = every_format_trust_and_scans()
    files = []
    for i, doc in enumerate(docs[1:]):  # GT1's issuer is in the config
        (tmp_path / f"doc{i}.json").write_text(json.dumps(doc))
        files.append(str(tmp_path / f"doc{i}.json"))
    (tmp_path / "mqtt.pw").write_text(PASSWORD + "\n")
    data = base_config(tmp_path, ISSUER)
    data["gate"]["log_level"] = "debug"
    data["policy"] = {"formats": ["gt1", "jws", "totp", "eth_qr", "pretix_sig1", "pretix_random"], "reentry": "allow"}
    data["trust"]["files"] = files
    data["sync"] = broker.sync_table(password_file=str(tmp_path / "mqtt.pw"), status_interval=0.5,
                                     identity_file=str(KEYS.identity_file("lane-1", tmp_path)), recovery="admit",
                                     recovery_wait=0)  # alone on the bus: decide from the start
    data["simulator"]["walk_time"] = 0.02
    config = write_config(tmp_path / "gate.toml", data)
    bus = Watcher(broker.port, ["gate/v2/#"], "venue-admin", "admin-pw")
    scanner = SimulatedScanner(data["scanner"]["port"])
    log = tmp_path / "gate.log"
    # The lane decides at the real time: the time-bound scans (made for NOW) are refused for
    # time, which is a decision that is logged and published like any other.
    process = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], stderr=open(log, "wb"))
    status_seen = bytearray()
    try:
        control = ControlClient(data["simulator"]["control_socket"], timeout=20)
        control.wait_for(lambda e: e["event"] == "ready" or (e["event"] == "hello" and e["ready"]), timeout=20)
        assert scanner.wait_until_opened(10)
        status = socket.socket(socket.AF_UNIX)
        status.connect(data["status"]["socket"])
        threading.Thread(target=_collect, args=(status, status_seen), daemon=True).start()
        wait_until(lambda: any(t.endswith("/status") for t, _p, _r in bus.messages), 10)
        shown = []
        for text in scans:
            damaged = text[:-3] + ("AAA" if not text.endswith("AAA") else "BBB")
            for variant in (text, damaged):
                mark = control.mark()
                control.send("person", direction="in", walks=True)
                control.wait_for(lambda e: e["event"] == "queued", start=mark)
                scanner.scan(variant)
                decision = control.wait_for(lambda e: e["event"] == "decision", start=mark)
                if decision["accepted"]:
                    control.wait_for(lambda e: e["event"] == "record" and e["kind"] == "passage", start=mark)
                else:
                    control.send("leave", direction="in")
                shown.append((variant, decision["reason"]))
        assert any(reason == "ok" for _t, reason in shown), shown
        wait_until(lambda: len([t for t, _p, _r in bus.messages if "/ledger/" in t]) >= 1, 10)
        time.sleep(1.0)  # a status round and the scans topic
    finally:
        process.terminate()
        process.wait(20)
        scanner.close()
        bus.close()
        broker.stop()

    secrets = {PASSWORD, docs[1]["valid_secrets"][0]["secret"], docs[2]["tickets"][0]["key"], docs[2]["event_key"]}
    for text, _reason in shown:
        secrets |= {text}
    pieces = set().union(*(_secret_pieces(s) for s in secrets))
    places = {"the log": log.read_text(errors="replace"), "the status socket": status_seen.decode(errors="replace")}
    for topic, payload, _retained in bus.messages:
        places[f"topic {topic}"] = places.get(f"topic {topic}", "") + payload.decode(errors="replace")
    assert len(places["the log"]) > 2000 and "decision accepted=" in places["the log"]  # debug logging did run
    assert len(places["the status socket"]) > 200
    leaks = [(where, piece[:24]) for where, text in places.items() for piece in pieces if piece in text]
    assert not leaks, leaks


def _collect(sock: socket.socket, into: bytearray) -> None:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        into.extend(data)


def test_lane_files_are_for_its_user_alone_even_with_an_open_umask(tmp_path, tickets):
    """State folder 0700, ledger and its WAL 0600, sockets 0600/0660: whatever umask the lane
    was started with (systemd's unit sets 0027; a technician's shell may have 0000)."""
    data = base_config(tmp_path, ISSUER)
    config = write_config(tmp_path / "gate.toml", data)
    scanner = SimulatedScanner(data["scanner"]["port"])
    process = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: os.umask(0))
    try:
        control = ControlClient(data["simulator"]["control_socket"], timeout=20)
        control.wait_for(lambda e: e["event"] == "ready" or (e["event"] == "hello" and e["ready"]), timeout=20)
        assert scanner.wait_until_opened(10)
        mark = control.mark()
        scanner.scan(tickets.static())  # the ledger is written: its WAL exists
        control.wait_for(lambda e: e["event"] == "decision", start=mark)
        state = Path(data["gate"]["state_dir"])
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.iterdir()]}
        modes["sim.sock"] = stat.S_IMODE(os.stat(data["simulator"]["control_socket"]).st_mode)
        modes["status.sock"] = stat.S_IMODE(os.stat(data["status"]["socket"]).st_mode)
    finally:
        process.terminate()
        process.wait(20)
        scanner.close()
    assert modes["state"] == 0o700, modes
    assert {name: mode for name, mode in modes.items() if name.startswith("gate.db")} == \
        {name: 0o600 for name in modes if name.startswith("gate.db")} and "gate.db-wal" in modes, modes
    assert modes["sim.sock"] == 0o600 and modes["status.sock"] == 0o660, modes


def test_totp_codes_are_compared_in_constant_time(monkeypatch, verifier):
    """Every TOTP comparison goes through hmac.compare_digest: none is ``==`` on the code."""
    import hmac

    from tests.support import vendors

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    v = verifier([{"format": "totp", "event": "arena", "event_key": "00" * 20, "tickets": [{"token": "T1", "key": "11" * 20}]}])
    good = f"T1::{vendors.totp_code(bytes.fromhex('00' * 20), NOW)}::{vendors.totp_code(bytes.fromhex('11' * 20), NOW)}::{NOW}"
    assert v.decide(good, NOW).accepted
    assert len(calls) >= 2
    calls.clear()
    token, first, second, at = good.split("::")
    wrong = "::".join([token, "000000" if first != "000000" else "111111", second, at])
    assert v.decide(wrong, NOW).reason == "bad_signature" and calls


def test_every_input_has_a_size_limit(tmp_path, verifier):
    """Too much of anything is refused with an error naming the limit, before it is parsed."""
    from drivers.serial_scanner import LineFramer
    from gate import config as gate_config
    from gate import trust
    from gate.config import ConfigError
    from gate.formats import TrustError, gt1
    from gate.sync import messages
    from gate.trust import signed
    from gate.trust.signed import SignedError

    v = verifier([])
    assert v.decide("GT1:" + "A" * 9000, NOW).reason == "unreadable"  # scanner / camera text
    framer = LineFramer(1024)
    assert framer.feed(b"A" * 5000 + b"\r\nOK\r\n") == [b"OK"] and framer.overlong == 1  # a scanner line
    with pytest.raises(gt1.Unreadable, match="longer than"):
        gt1.parse_nfc_answer(b"\x81" + b"\x00" * 5000)  # an NFC answer
    with pytest.raises(messages.MessageError, match="more than"):
        messages.decode_records(b"{" + b" " * messages.MAX_PAYLOAD + b"}", "gate-2")  # a bus message
    with pytest.raises(SignedError, match="more than"):
        signed.read(b" " * (signed.MAX_SIGNED + 1), bytes(32), "v")  # a bundle or command
    with pytest.raises(TrustError, match="larger than"):
        trust.parse_document(b" " * (trust.MAX_DOCUMENT_BYTES + 1), "huge.json")  # a trust document
    big = tmp_path / "gate.toml"
    big.write_bytes(b"#" * (gate_config.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        gate_config.load(big)  # the config
    nested = b"[" * 100 + b"]" * 100
    with pytest.raises(messages.MessageError):
        messages.decode_records(nested, "gate-2")
