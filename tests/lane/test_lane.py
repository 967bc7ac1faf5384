"""A simulated lane end to end: scanner pty → real serial driver → decision loop → ledger →
gpiozero outputs on MockFactory pins → simulated turnstile → passage contact → ledger."""

from __future__ import annotations

import time

import pytest

from gate.formats import gt1
from tests.support.lanes import EVENT, wait_until


def test_valid_ticket_pulses_relay_shows_green_and_records_admission_and_passage(lane, tickets):
    decision = lane.present(tickets.static(product="ga"))
    assert decision["accepted"] and decision["reason"] == "ok"
    wait_until(lambda: lane.pulses("unlock_in") == 1)
    assert lane.pulses("green") == 1 and lane.pulses("buzzer") == 1
    wait_until(lambda: lane.records("passage"))
    lane.idle()
    assert not lane.output("unlock_in"), "pulse mode: relay released after the pulse"
    admission, passage = lane.records("admission")[0], lane.records("passage")[0]
    assert admission["ticket_key"] == decision["ticket_key"] and admission["direction"] == "in"
    assert (passage["ref_origin"], passage["ref_seq"]) == ("lane-1", admission["seq"])
    assert lane.turnstile.passages["in"] == 1


def test_admission_is_on_disk_before_the_relay_moves(lane, tickets):
    seen_at_unlock = []
    lane.turnstile.listeners.append(
        lambda name, on: seen_at_unlock.append(len(lane.records("admission"))) if name == "unlock_in" and on else None
    )
    lane.present(tickets.static())
    wait_until(lambda: seen_at_unlock)
    assert seen_at_unlock[0] == 1


def test_second_use_is_already_used_and_relay_stays_locked(lane, tickets):
    ticket = tickets.static()
    assert lane.present(ticket)["accepted"]
    lane.idle()
    decision = lane.present(ticket, walks=None)
    assert decision["reason"] == "already_used" and not decision["accepted"]
    assert lane.pulses("unlock_in") == 1
    assert lane.output("red") and lane.pulses("red") == 1
    assert len(lane.records("admission")) == 1


def test_rotating_code_opens_and_old_code_is_stale(lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key))
    fresh = gt1.encode_rotating(cose, holder, int(time.time()))
    assert lane.present(fresh)["accepted"]
    assert lane.pulses("unlock_in") == 1
    other = tickets.cose(holder_key=bytes(holder.verify_key))
    old = gt1.encode_rotating(other, holder, int(time.time()) - 31)
    lane.idle()
    decision = lane.present(old, walks=None)
    assert decision["reason"] == "stale_proof"
    assert lane.pulses("unlock_in") == 1


def test_holder_bound_ticket_in_static_form_is_stale_proof(lane, tickets, holder):
    decision = lane.present(tickets.static(holder_key=bytes(holder.verify_key)), walks=None)
    assert decision["reason"] == "stale_proof"
    assert lane.pulses("unlock_in") == 0


def test_replayed_rotating_code_on_a_multi_entry_ticket(lane, tickets, holder):
    cose = tickets.cose(holder_key=bytes(holder.verify_key), entries=0)
    code = gt1.encode_rotating(cose, holder, int(time.time()))
    assert lane.present(code)["accepted"]
    lane.idle()
    assert lane.present(code, walks=None)["reason"] == "replayed_proof"
    fresh = gt1.encode_rotating(cose, holder, int(time.time()) + 1)
    lane.idle()
    assert lane.present(fresh)["accepted"], "a newly drawn code of an unlimited ticket opens again"


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"not_before": int(time.time()) + 3600}, "not_yet_valid"),
        ({"expires": int(time.time()) - 1}, "expired"),
        ({"event": "another-event"}, "wrong_event"),
    ],
)
def test_ticket_outside_its_window_or_event_is_refused(lane, tickets, claims, reason):
    decision = lane.present(tickets.static(**claims), walks=None)
    assert decision["reason"] == reason
    assert lane.pulses("unlock_in") == 0 and lane.output("red")
    assert lane.records("admission") == []


def test_tampered_payload_and_signature_are_bad_signature(lane, tickets):
    cose = bytearray(tickets.cose(product="ga"))
    payload_at = bytes(cose).index(b"ga")
    tampered = bytearray(cose)
    tampered[payload_at] = ord("x")  # "ga" -> "xa" inside the signed payload
    assert lane.present(gt1.encode_static(bytes(tampered)), walks=None)["reason"] == "bad_signature"
    lane.idle()
    cose[-1] ^= 0x01  # last byte of the signature
    assert lane.present(gt1.encode_static(bytes(cose)), walks=None)["reason"] == "bad_signature"
    assert lane.pulses("unlock_in") == 0


def test_unknown_kid_is_unknown_key(lane):
    from nacl.signing import SigningKey

    stranger = SigningKey(b"\x09" * 32)
    cose = gt1.issue(stranger, gt1.build_claims(cti=b"s" * 16, event=EVENT))
    decision = lane.present(gt1.encode_static(cose), walks=None)
    assert decision["reason"] == "unknown_key"
    assert lane.pulses("unlock_in") == 0


def test_revoked_ticket_is_refused(lane, tickets, config_data, tmp_path):
    from gate.cli.main import main
    from tests.support.lanes import write_config

    ticket = tickets.static()
    path = write_config(tmp_path / "gate.toml", config_data)
    assert main(["revoke", "--config", str(path), ticket]) == 0  # a technician, while the lane runs
    decision = lane.present(ticket, walks=None)
    assert decision["reason"] == "revoked"
    assert lane.pulses("unlock_in") == 0


def test_nobody_passes_then_admission_is_reverted_and_ticket_opens_again(lane, tickets):
    ticket = tickets.static()
    assert lane.present(ticket, walks=False)["accepted"]
    wait_until(lambda: lane.records("revert"), timeout=5)
    lane.idle()
    revert = lane.records("revert")[0]
    assert revert["ref_seq"] == lane.records("admission")[0]["seq"]
    assert lane.present(ticket)["accepted"], "a reverted admission leaves the ticket valid"
    wait_until(lambda: lane.records("passage"))
    assert lane.pulses("unlock_in") == 2


def test_scan_while_someone_is_passing_is_busy(lane, tickets):
    assert lane.present(tickets.static(), walks=False)["accepted"]
    decision = lane.present(tickets.static(), walks=None)
    assert decision["reason"] == "busy"
    assert lane.pulses("unlock_in") == 1


def test_passage_without_admission_is_reported_as_forced(lane):
    lane.turnstile.pass_through("in")
    wait_until(lambda: lane.records("forced_passage"))
    assert lane.alarms[-1] == {"alarm": "forced_passage", "direction": "in"}
    assert lane.records("admission") == []


def test_fire_alarm_releases_relay_refuses_scans_and_clears(start_lane, config_data, tickets):
    config_data["turnstile"]["unlock_mode"] = "level"
    config_data["turnstile"]["passage_timeout"] = 30.0
    lane = start_lane(config_data)
    assert lane.present(tickets.static(), walks=False)["accepted"]
    assert lane.output("unlock_in"), "level mode holds the relay while waiting"
    lane.turnstile.set_fire_alarm(True)
    wait_until(lambda: not lane.output("unlock_in"))
    wait_until(lambda: lane.records("revert"))
    decision = lane.present(tickets.static(), walks=None)
    assert decision["reason"] == "emergency"
    assert not lane.output("unlock_in")
    assert {"alarm": "fire", "active": True} in lane.alarms
    lane.turnstile.set_fire_alarm(False)
    wait_until(lambda: {"alarm": "fire", "active": False} in lane.alarms)
    assert lane.present(tickets.static())["accepted"]


def test_fire_loop_open_at_start_means_emergency_from_the_first_scan(start_lane, config_data, tickets):
    lane = start_lane(config_data)
    lane.turnstile.set_fire_alarm(True)
    wait_until(lambda: lane.daemon.loop.turnstile.emergency)
    assert lane.present(tickets.static(), walks=None)["reason"] == "emergency"


def test_locked_mode_refuses_and_free_mode_holds_open(start_lane, config_data, tickets):
    config_data["gate"]["mode"] = "locked"
    lane = start_lane(config_data)
    assert lane.present(tickets.static(), walks=None)["reason"] == "gate_closed"
    assert lane.output("red") and not lane.output("unlock_in")


def test_free_mode_holds_relays_energized(start_lane, config_data, tickets):
    config_data["gate"]["mode"] = "free"
    lane = start_lane(config_data)
    wait_until(lambda: lane.output("unlock_in") and lane.output("green"))
    lane.turnstile.pass_through("in")
    time.sleep(0.1)
    assert lane.records() == [], "free passages are not forced passages"
    decision = lane.present(tickets.static(), walks=None)
    assert decision["accepted"] and decision["details"]["mode"] == "free", decision
    assert lane.records() == [], "a ticket shown to an open lane is not an admission"


def test_level_mode_holds_relay_until_the_passage(start_lane, config_data, tickets):
    config_data["turnstile"]["unlock_mode"] = "level"
    config_data["simulator"]["walk_time"] = 0.4
    lane = start_lane(config_data)
    assert lane.present(tickets.static())["accepted"]
    time.sleep(0.2)
    assert lane.output("unlock_in"), "held past the pulse length while the person walks"
    wait_until(lambda: lane.records("passage"))
    wait_until(lambda: not lane.output("unlock_in"))


def test_garbage_and_overlong_lines_are_refused_and_the_lane_goes_on(lane, tickets):
    lane.scanner.write(b"\x00\xff\xfe garbage \x1b[2J\r\n")
    assert lane.decisions.get(timeout=5)["reason"] in ("unreadable", "unknown_format")
    lane.scanner.write(b"A" * 5000 + b"\r\n")  # longer than max_line: dropped with a log line
    lane.scanner.scan("hello world")
    assert lane.decisions.get(timeout=5)["reason"] == "unknown_format"
    lane.idle()
    assert lane.present(tickets.static())["accepted"]


def test_exit_scan_reopens_an_after_exit_ticket(start_lane, config_data, tickets):
    config_data["policy"]["reentry"] = "after_exit"
    lane = start_lane(config_data)
    ticket = tickets.static()
    assert lane.present(ticket)["accepted"]
    lane.idle()
    assert lane.present(ticket, walks=None)["reason"] == "already_used"
    lane.idle()
    # leaving through the exit side: the daemon's own loop, as an exit reader would post it
    lane.turnstile.person("out", True)
    lane.daemon.loop.scan(ticket, "exit-reader", "out")
    assert lane.decisions.get(timeout=5)["accepted"]
    wait_until(lambda: len(lane.records("passage")) == 2)
    lane.idle()
    assert lane.present(ticket)["accepted"]


def test_free_exit_is_recorded_not_forced(lane):
    lane.turnstile.pass_through("out")
    wait_until(lambda: lane.records("free_exit"))
    assert lane.records("forced_passage") == []


def test_tamper_is_reported(lane):
    lane.turnstile.set_tamper(True)
    wait_until(lambda: {"alarm": "tamper", "active": True} in lane.alarms)


def test_an_exception_while_deciding_denies_with_error_and_the_loop_goes_on(lane, tickets, monkeypatch):
    from gate import policy

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(policy, "check_ticket", broken)
    decision = lane.present(tickets.static(), walks=None)
    assert decision["reason"] == "error" and not decision["accepted"]
    assert lane.pulses("unlock_in") == 0
    monkeypatch.undo()
    lane.idle()
    assert lane.present(tickets.static())["accepted"]


def test_a_ledger_that_cannot_write_denies_with_error_and_never_opens(lane, tickets, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lane.daemon.store.ledger, "append", full_disk)
    decision = lane.present(tickets.static(), walks=None)
    assert decision["reason"] == "error"
    assert lane.pulses("unlock_in") == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash is the point
def test_a_crash_of_the_decision_loop_leaves_outputs_safe(start_lane, config_data, tickets):
    """A bug outside the guarded decision path kills the loop: relay released, red on."""
    config_data["turnstile"]["unlock_mode"] = "level"
    config_data["turnstile"]["passage_timeout"] = 30.0
    lane = start_lane(config_data)
    assert lane.present(tickets.static(), walks=False)["accepted"]
    assert lane.output("unlock_in")

    def broken(direction):
        raise RuntimeError("simulated bug in the turnstile rules")

    lane.daemon.loop.turnstile.passage = broken
    lane.turnstile.pass_through("in")
    wait_until(lambda: not lane.daemon.loop.alive)
    assert isinstance(lane.daemon.loop.crashed, RuntimeError)
    assert not lane.output("unlock_in") and lane.output("red") and not lane.output("green")
