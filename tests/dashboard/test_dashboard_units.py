"""The dashboard's parts without a browser: its config read strictly, hostile bus payloads, the
venue's counts, passwords, and the command's two steps."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate.cli import main as cli
from gate.dashboard import messages
from gate.dashboard.audit import AuditLog
from gate.dashboard.auth import Auth, TooManyAttempts, hash_password, verify_password
from gate.dashboard.commands import Commander, CommandRefused
from gate.dashboard.hub import Hub
from gate.dashboard.settings import CommandSettings, User, load, parse
from gate.dashboard.venue import MAX_RUNS, Seqs, Venue
from gate.errors import ConfigError
from gate.store.ledger import Record
from gate.store.trust_store import RosterRow
from gate.trust import signed
from tests.support.venue import ADMIN, KEYS, ROOT, VENUE

REPO = Path(__file__).resolve().parents[2]
HASH = hash_password("correct horse battery")


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"dashboard": {"venue": VENUE}, "users": [{"name": "ops", "password_hash": HASH}],
                            "bus": {"host": "127.0.0.1"}, "trust": {"admin_key": KEYS.admin_public_hex}}
    for table, values in extra.items():
        data.setdefault(table, {}).update(values)
    return data


def test_a_typo_or_a_bad_value_stops_the_start_and_every_problem_is_named(tmp_path: Path) -> None:
    data = minimal(dashboard={"lisen": "0.0.0.0:80", "stale_after": "soon"}, bus={"prot": 1883})
    data["users"].append({"name": "ops", "password_hash": "hunter2"})
    data["occupancy"] = {"capacity": {"north": -5}}
    with pytest.raises(ConfigError) as caught:
        parse(data, str(tmp_path / "dashboard.toml"))
    problems = "\n".join(caught.value.problems)
    for expected in ("dashboard.lisen: unknown key", "dashboard.stale_after: expected float", "bus.prot: unknown key",
                     "users[1].password_hash: an scrypt hash", "users[1].name: 'ops' given twice",
                     "occupancy.capacity.north: must be at least 1, got -5"):
        assert expected in problems, problems
    assert "hunter2" not in problems  # the wrong value of a password field is not echoed


def test_the_shipped_example_reads_once_its_files_exist(tmp_path: Path) -> None:
    text = (REPO / "config" / "dashboard.example.toml").read_text()
    for name in ("/etc/gate/dashboard/dashboard.crt", "/etc/gate/dashboard/dashboard.key", "/etc/gate/venue-ca.crt",
                 "/run/credentials/gate-venue-dashboard.service/monitor.pw",
                 "/run/credentials/gate-venue-dashboard.service/admin-mqtt.pw"):
        local = tmp_path / Path(name).name
        local.write_text("secret\n")
        local.chmod(0o600)
        text = text.replace(name, str(local))
    key = tmp_path / "admin.key"
    key.write_text(base64.b64encode(bytes(ADMIN)).decode())
    key.chmod(0o600)
    text = text.replace("/run/credentials/gate-venue-dashboard.service/admin.key", str(key))
    text = text.replace("<the admin's public key, as in the lanes' [trust] admin_key>", KEYS.admin_public_hex)
    text = text.replace("/var/lib/gate-dashboard/audit.log", str(tmp_path / "audit.log"))
    (tmp_path / "dashboard.toml").write_text(text)
    config = load(tmp_path / "dashboard.toml")
    assert config.tls and config.url == "https://localhost:8443/"
    assert config.bus.username == "venue-monitor" and config.bus.tls
    assert config.commands.broker is not None and config.commands.broker.username == "venue-admin"
    assert config.commands.signing_key == bytes(ADMIN)
    assert config.capacity == {"north": 12000, "south": 9500} and config.alarm_percent == 90
    assert config.warnings == ()


@pytest.mark.parametrize("table, key, value, expected", [
    ("dashboard", "push_interval", 5, "must be at most 1.0, got 5.0"),
    ("dashboard", "stale_after", 0.5, "must be at least 1.0, got 0.5"),
    ("occupancy", "alarm_percent", 150, "must be at most 100.0, got 150.0"),
    ("commands", "wait", 0, "must be at least 0.5, got 0.0"),
    ("bus", "port", 70000, "must be at most 65535, got 70000"),
])
def test_a_value_out_of_its_range_stops_the_start_with_the_lane_configs_words(tmp_path: Path, table: str, key: str,
                                                                               value: float, expected: str) -> None:
    """The same strict reader as gate.toml's (gate.config.TomlTable): no default slipped in."""
    with pytest.raises(ConfigError) as caught:
        parse(minimal(**{table: {key: value}}), str(tmp_path / "dashboard.toml"))
    assert f"{table}.{key}: {expected}" in caught.value.problems


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    data = minimal()
    del data["trust"], data["bus"]
    with pytest.raises(ConfigError) as caught:
        parse(data, str(tmp_path / "dashboard.toml"))
    assert {"trust: required table missing", "bus: required table missing"} <= set(caught.value.problems)


@pytest.mark.parametrize("table, key", [("dashboard", "session_hours"), ("dashboard", "push_interval"),
                                        ("dashboard", "stale_after"), ("occupancy", "alarm_percent"), ("commands", "wait")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_no_setting(tmp_path: Path, table: str, key: str, value: float) -> None:
    """TOML has nan and inf, and no comparison refuses nan: a session of nan hours would never end."""
    with pytest.raises(ConfigError) as caught:
        parse(minimal(**{table: {key: value}}), str(tmp_path / "dashboard.toml"))
    assert f"{table}.{key}: must be a finite number" in "\n".join(caught.value.problems)


def test_secret_files_open_to_others_and_a_network_listen_without_tls(tmp_path: Path, capsys: Any) -> None:
    import tomli_w

    key = tmp_path / "admin.key"
    key.write_text(base64.b64encode(bytes(ADMIN)).decode())
    key.chmod(0o640)
    password = tmp_path / "monitor.pw"
    password.write_text("secret\n")
    password.chmod(0o644)
    with pytest.raises(ConfigError) as caught:  # the key that commands every lane: no start
        parse(minimal(commands={"signing_key_file": str(key)}), str(tmp_path / "dashboard.toml"))
    assert f"commands.signing_key_file: {key} is open to its group or others (mode 640)" in caught.value.problems[0]
    key.chmod(0o600)
    config = parse(minimal(dashboard={"listen": "0.0.0.0:8080"}, bus={"password_file": str(password)},
                           commands={"signing_key_file": str(key)}), str(tmp_path / "dashboard.toml"))
    assert config.commands.signing_key == bytes(ADMIN)
    warnings = "\n".join(config.warnings)
    assert f"bus.password_file: {password} is a secret but has mode 644" in warnings
    assert "dashboard.listen: 0.0.0.0:8080 is reachable from the network without TLS" in warnings
    password.chmod(0o600)
    for listen in ("127.0.0.1:8080", "[::1]:8080", "localhost:8080"):
        assert parse(minimal(dashboard={"listen": listen}, bus={"password_file": str(password)})).warnings == ()
    path = tmp_path / "dashboard.toml"
    path.write_text(tomli_w.dumps(minimal(dashboard={"listen": "192.0.2.1:8080"})))
    assert cli.main(["venue-dashboard", "check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "without TLS" in json.loads(out)["warnings"][0] and "warning: dashboard.listen" in err


def test_check_config_and_hash_password_on_the_command_line(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    import io

    path = tmp_path / "dashboard.toml"
    import tomli_w

    path.write_text(tomli_w.dumps(minimal(dashboard={"listen": "127.0.0.1:9999"})))
    assert cli.main(["venue-dashboard", "check-config", "--config", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["commands"] == "off (no admin key)" and out["url"] == "http://localhost:9999/"
    path.write_text(path.read_text() + "\n[unknown]\n")
    assert cli.main(["venue-dashboard", "check-config", "--config", str(path)]) == 2
    assert "unknown: unknown key" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli.main(["venue-dashboard", "hash-password"]) == 0
    made = capsys.readouterr().out.strip()
    assert made.startswith("scrypt$") and verify_password("a long enough password", made) and "long enough" not in made


def test_passwords_sessions_and_the_brake_on_guessing() -> None:
    assert verify_password("correct horse battery", HASH) and not verify_password("Correct horse battery", HASH)
    assert not verify_password("x", "scrypt$garbage")
    auth = Auth((User("ops", HASH),), session_hours=1)
    for _ in range(5):
        assert auth.login("ops", "wrong", "10.0.0.9") is None
    assert auth.throttled("10.0.0.9") and not auth.throttled("10.0.0.10")
    token = auth.login("ops", "correct horse battery", "10.0.0.10")
    assert token is not None and auth.session(token).user == "ops"
    auth.logout(token)
    assert auth.session(token) is None and auth.login("nobody", "correct horse battery", "10.0.0.11") is None
    with pytest.raises(TooManyAttempts):
        auth.login("ops", "correct horse battery", "10.0.0.9")  # not even the right password, this minute


def test_parallel_guesses_share_the_brake_and_it_forgets() -> None:
    import threading

    from gate.dashboard import auth as auth_module

    auth = Auth((User("ops", HASH),), session_hours=1)
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def guess() -> None:
        start.wait()  # all twenty at once: each takes its attempt before any password is checked
        try:
            outcomes.append("checked" if auth.login("ops", "wrong", "10.0.0.9") is None else "in")
        except TooManyAttempts:
            outcomes.append("throttled")

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("checked") == auth_module.MAX_FAILURES and outcomes.count("throttled") == 15
    # a success gives its attempt back; an address whose minute is over is forgotten
    assert auth.login("ops", "correct horse battery", "10.0.0.10") is not None and "10.0.0.10" not in auth._failures
    assert not auth.throttled("10.0.0.9", now=time.monotonic() + 61) and "10.0.0.9" not in auth._failures


def test_the_brake_remembers_a_bounded_number_of_addresses(monkeypatch: Any) -> None:
    from gate.dashboard import auth as auth_module

    monkeypatch.setattr(auth_module, "MAX_CLIENTS", 50)
    monkeypatch.setattr(auth_module, "verify_password", lambda password, stored: False)  # no scrypt: 200 guesses
    auth = Auth((User("ops", HASH),), session_hours=1)
    for i in range(200):
        auth.login("ops", "wrong", f"10.0.{i // 256}.{i % 256}")
    assert len(auth._failures) == 50 and "10.0.0.199" in auth._failures and "10.0.0.0" not in auth._failures


STATUS = {"v": 2, "gate": "lane-1", "state": "online", "mode": "normal", "emergency": False,
          "clock": {"synchronized": True, "guard": "refuse", "checked": True, "now": 1795300000.4},
          "counters": {"accepted": 812, "denied.already_used": 3, "passages": 810, "tamper": 1},
          "version": "0.1.0", "venue": VENUE, "outbox": 2, "conflicts": 1, "held": None,
          "readers": {"scanner": {"connected": True, "lines": 5}, "camera": {"problem": "no camera"}},
          "bundle": {"version": 7, "delta": 0}, "sync": {"received": 1, "refused": 4, "refusals": {}}, "at": 1795300000.5}


def test_a_status_as_docs_mqtt_md_shows_it_is_read_and_a_hostile_one_refused() -> None:
    status = messages.read_status(json.dumps(STATUS).encode(), "lane-1")
    assert (status.online, status.mode, status.bundle_version, status.outbox, status.conflicts) == (True, "normal", 7, 2, 1)
    assert status.readers == (("scanner", True, ""), ("camera", False, "no camera")) and status.counters["tamper"] == 1
    assert not messages.read_status(b'{"v": 2, "gate": "lane-1", "state": "offline"}', "lane-1").online
    for bad in (b"", b"null", b"[" * 50_000, b"x" * 70_000, json.dumps({**STATUS, "gate": "lane-2"}).encode(),
                json.dumps({**STATUS, "mode": "<b>"}).encode(), json.dumps({**STATUS, "outbox": -1}).encode(),
                json.dumps({**STATUS, "at": "soon"}).encode(), json.dumps({**STATUS, "v": 1}).encode(),
                json.dumps({**STATUS, "state": "sleepy"}).encode()):
        with pytest.raises(messages.BadMessage):
            messages.read_status(bad, "lane-1")


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
                    max_leaves=30))
def test_no_payload_breaks_the_readers_or_the_venue(value: Any) -> None:
    """Whatever arrives, the dashboard refuses it (BadMessage) or shows it; nothing else escapes."""
    venue = Venue(VENUE)
    for payload in (json.dumps(value).encode(), json.dumps({**STATUS, "counters": value, "readers": value}).encode()):
        for read in (messages.read_status, messages.read_scan, messages.read_command_result):
            try:
                parsed = read(payload, "lane-1")
            except messages.BadMessage:
                continue
            if isinstance(parsed, messages.LaneStatus):
                venue.on_status(parsed, 1.0)
            elif isinstance(parsed, messages.Scan):
                venue.on_scan(parsed, 1.0)
    json.dumps(venue.snapshot(2.0))


def record(origin: str, seq: int, kind: str, direction: str | None = "in", at: float = 1_800_000_000.0) -> Record:
    return Record(origin, seq, kind, at, direction=direction, epoch="e1")


def test_counts_come_from_records_once_each_and_zones_from_the_roster_whenever_it_arrives() -> None:
    venue = Venue(VENUE, capacity={"north": 4}, alarm_percent=75)
    records = [record("a", 1, "admission"), record("a", 2, "passage"), record("a", 3, "admission"), record("a", 4, "revert"),
               record("b", 1, "forced_passage"), record("b", 2, "free_exit", "out"), record("b", 3, "admission", "out"),
               record("b", 4, "passage", "out"), record("a", 5, "admission"), record("a", 6, "passage")]
    assert venue.on_records(records) == 10
    assert venue.on_records(records[:4]) == 0  # a catch-up answer's copies count once
    snap = venue.snapshot(1_800_000_030.0)
    assert snap["zones"] == [{"zone": "north", "entries": 0, "exits": 0, "gates": 0, "per_minute": 0, "occupancy": 0,
                              "capacity": 4, "percent": 0.0, "alarm": False}]
    venue.on_roster(3, [RosterRow("a", b"k" * 32, "north", ("in",), False), RosterRow("b", b"k" * 32, "north", ("in", "out"), False),
                        RosterRow("c", b"k" * 32, None, ("in",), False)])
    snap = venue.snapshot(1_800_000_030.0)
    lanes = {lane["gate"]: lane for lane in snap["lanes"]}
    assert (lanes["a"]["entries"], lanes["a"]["exits"], lanes["b"]["entries"], lanes["b"]["exits"]) == (2, 0, 1, 2)
    north = snap["zones"][0]
    assert (north["occupancy"], north["percent"], north["alarm"]) == (1, 25.0, False)
    assert lanes["c"]["health"] == "unknown" and snap["totals"]["forced"] == 1 and snap["chart"][-1] == 3


def test_copies_are_found_in_memory_that_grows_with_gaps_not_records() -> None:
    venue = Venue(VENUE)
    assert venue.on_records(record("a", seq, "admission") for seq in range(5000, 105_000)) == 100_000  # started mid-event
    assert venue.on_records(record("a", seq, "admission") for seq in (1, 3, 2, 4999, 5000, 104_999, 105_001)) == 5
    seqs = venue.seen[("a", "e1")]
    assert (seqs.firsts, seqs.lasts) == ([1, 4999, 105_001], [3, 104_999, 105_001]) and len(seqs) == 100_005
    assert venue.lanes["a"].records == 100_005
    many = Seqs()
    for seq in range(2, 4 * MAX_RUNS, 2):  # every other record missing: at most MAX_RUNS runs are kept
        assert many.add(seq)
    assert len(many.firsts) == MAX_RUNS and not many.add(4 * MAX_RUNS - 2) and many.add(4 * MAX_RUNS - 1)


def test_refusal_reasons_are_the_decisions_codes_or_other() -> None:
    venue = Venue(VENUE)
    for i in range(1000):
        venue.on_scan(messages.Scan("lane-1", False, f"made_up_{i}", None, "in", None), now=1.0)
    venue.on_scan(messages.Scan("lane-1", False, "already_used", None, "in", None), now=1.0)
    assert venue.snapshot(2.0)["refusals"] == {"other": 1000, "already_used": 1}


def test_no_answer_is_written_to_the_audit_log_off_the_pages_thread() -> None:
    import threading

    venue = Venue(VENUE)
    hub = Hub(venue, ROOT, bytes(ADMIN.verify_key), command_wait=1.0)
    written: list[tuple[str, str]] = []
    done = threading.Event()
    hub.answered.append(lambda entry: (written.append((entry["state"], threading.current_thread().name)), done.set()))
    hub.command_sent({"nonce": "n1", "gate": "lane-1", "command": "reload", "user": "ops", "at": 100.0})
    hub.snapshot_json(now=102.0)
    assert done.wait(5)
    assert written[0][0] == "no_answer" and written[0][1] != threading.current_thread().name


def test_health_a_person_should_notice() -> None:
    venue = Venue(VENUE, stale_after=30)
    venue.on_roster(9, [])
    venue.on_status(messages.read_status(json.dumps(STATUS).encode(), "lane-1"), now=100.0)
    health, notes = venue.health(venue.lanes["lane-1"], now=200.0)
    assert health == "warn"
    assert set(notes) >= {"silent for 100 s", "camera: no camera", "old bundle 7", "1 conflict(s)", "tamper"}
    venue.on_status(messages.read_status(b'{"v": 2, "gate": "lane-1", "state": "offline"}', "lane-1"), now=201.0)
    assert venue.health(venue.lanes["lane-1"], now=201.0) == ("down", ["offline"])


def test_records_are_counted_only_when_their_gate_signed_them_and_the_roster_names_it() -> None:
    from gate.sync import messages as bus
    from gate.trust.records import sealer

    venue = Venue(VENUE)
    hub = Hub(venue, ROOT, bytes(ADMIN.verify_key))
    good = sealer(KEYS.add("lane-1"), VENUE)
    forged = sealer(KEYS.key("thief"), VENUE)
    hub.on_message(f"{ROOT}ledger/lane-1", bus.encode_records("lane-1", [good(record("lane-1", 1, "admission"))]))
    assert venue.lanes == {}  # held until the roster says whose key is whose
    roster = [signed.roster_entry("lane-1", bytes(KEYS.add("lane-1").verify_key), zone="north")]
    hub.on_message(f"{ROOT}bundle", signed.sign(signed.bundle_payload(VENUE, 5, time.time(), [], b"", roster), ADMIN))
    hub.on_message(f"{ROOT}ledger/lane-1", bus.encode_records("lane-1", [good(record("lane-1", 2, "passage")),
                                                                         forged(record("lane-1", 3, "passage"))]))
    forged_bundle = signed.sign(signed.bundle_payload(VENUE, 6, time.time(), [], b"", []), KEYS.key("thief"))
    hub.on_message(f"{ROOT}bundle", forged_bundle)
    assert venue.bundle_version == 5 and venue.lanes["lane-1"].records == 2 and venue.lanes["lane-1"].entries == 1
    assert sum(venue.malformed.values()) == 2  # the forged record and the forged bundle


def test_a_command_needs_the_key_a_known_gate_and_its_own_confirmation(tmp_path: Path) -> None:
    venue = Venue(VENUE)
    venue.lane("lane-1")
    hub = Hub(venue, ROOT, bytes(ADMIN.verify_key))
    audit = AuditLog(tmp_path / "audit.log")
    off = Commander(CommandSettings(), VENUE, hub, audit)
    with pytest.raises(CommandRefused, match="no admin key"):
        off.prepare("ops", "lane-1", "reload")
    from gate.config import SyncConfig

    on = Commander(CommandSettings(bytes(ADMIN), SyncConfig(host="127.0.0.1", port=1), 1.0), VENUE, hub, audit)
    with pytest.raises(CommandRefused, match="unknown gate"):
        on.prepare("ops", "lane-9", "reload")
    with pytest.raises(CommandRefused, match="the mode is one of"):
        on.prepare("ops", "lane-1", "set_mode", "emergency")
    pending = on.prepare("ops", "lane-1", "set_mode", "locked")
    assert pending.question == "Really set the mode of lane-1 to locked?"
    with pytest.raises(CommandRefused, match="expired or was used"):
        on.confirm("someone-else", pending.token)  # another user's confirmation is no confirmation
    with pytest.raises(CommandRefused, match="expired or was used"):
        on.confirm("ops", pending.token)  # and it is gone: one use
    assert [line["event"] for line in audit.lines()] == ["refused", "asked"]
    assert (tmp_path / "audit.log").stat().st_mode & 0o077 == 0


def test_copies_in_a_catch_up_answer_are_not_checked_again_and_new_records_still_are(monkeypatch: Any) -> None:
    """Every catch-up answer between gates reaches the dashboard too: what it counted already is
    dropped by its key before Ed25519 (paho's thread reads every other message behind it)."""
    from gate.dashboard import hub as hub_module
    from gate.sync import messages as bus
    from gate.trust.records import sealer

    venue = Venue(VENUE)
    hub = Hub(venue, ROOT, bytes(ADMIN.verify_key))
    roster = [signed.roster_entry("lane-1", bytes(KEYS.add("lane-1").verify_key))]
    hub.on_message(f"{ROOT}bundle", signed.sign(signed.bundle_payload(VENUE, 5, time.time(), [], b"", roster), ADMIN))
    good = sealer(KEYS.add("lane-1"), VENUE)
    forged = sealer(KEYS.key("thief"), VENUE)
    hub.on_message(f"{ROOT}ledger/lane-1", bus.encode_records("lane-1", [good(record("lane-1", seq, "forced_passage")) for seq in (1, 2)]))
    checked: list[str] = []
    opener = hub_module.open_record
    monkeypatch.setattr(hub_module, "open_record", lambda text, *rest: (checked.append(text), opener(text, *rest))[1])
    answer = [forged(record("lane-1", 2, "forced_passage")), good(record("lane-1", 3, "forced_passage")),
              forged(record("lane-1", 4, "forced_passage"))]
    hub.on_message(f"{ROOT}sync/reply/lane-2/lane-3", bus.encode_reply("lane-3", answer))
    assert [text for text, _ in answer[1:]] == checked  # the copy of seq 2 was not checked, 3 and 4 were
    lane = venue.lanes["lane-1"]
    assert (lane.records, lane.entries) == (3, 3) and sum(venue.malformed.values()) == 1  # the forged seq 4


def test_a_change_just_after_a_push_is_pushed_without_waiting_for_the_heartbeat(monkeypatch: Any) -> None:
    """Changes from the bus's thread wake a page's stream once until it pushes (not once per
    message): none is lost, however it falls against the push."""
    import asyncio
    import threading

    from gate.dashboard import web

    monkeypatch.setattr(web, "HEARTBEAT", 120.0)  # only a change can make the next push come in time
    hub = Hub(Venue(VENUE), ROOT, bytes(ADMIN.verify_key))

    class Request:
        async def is_disconnected(self) -> bool:
            return False

    def sent(i: int) -> dict[str, Any]:
        return {"nonce": f"n{i}", "gate": "lane-1", "command": "reload", "user": "ops", "at": time.time()}

    async def main() -> None:
        stream = web._stream(Request(), hub, 0.05, lambda: True)  # type: ignore[arg-type]
        assert await anext(stream) == b"retry: 1000\n\n"
        await anext(stream)
        for burst in range(5):  # a burst from another thread, each right after the push before
            thread = threading.Thread(target=lambda burst=burst: [hub.command_sent(sent(100 * burst + i)) for i in range(50)])
            thread.start()
            await asyncio.to_thread(thread.join)
            while True:
                data = json.loads((await asyncio.wait_for(anext(stream), 20))[len(b"data: "):])
                if data["commands"][0]["nonce"] == f"n{100 * burst + 49}":
                    break
        await stream.aclose()

    asyncio.run(main())
