"""SafeTix-style rotating TOTP barcodes: Ticketmaster's SDK test values, and codes drawn by
pyotp and a plain RFC 6238 routine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gate.formats import totp
from tests.support import vendors
from tests.support.lanes import wait_until, write_config
from tests.support.vendors import VECTOR_DIR

VECTORS = json.loads((VECTOR_DIR / "safetix-totp.json").read_text())
EK = bytes.fromhex("b06f0f6ff8750cb7875ab2604f2c48b41c79d83f")
CK = bytes.fromhex("3d27b77eb8bf1d227b54fda89783843aabe248e5")
VECTOR_TIME = 1548364791


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['role']}-padded={c['padded']}")
def test_sdk_values(case):
    key = bytes.fromhex(case["key_hex"])
    assert totp.totp(key, case["unix_ms"] // 1000 // VECTORS["step_seconds"], padded=case["padded"]) == case["totp"]


def vector_document() -> dict:
    return {"format": "totp", "event": "arena", "event_key": EK.hex(), "short_form": True,
            "tickets": [{"token": "TOKEN", "key": CK.hex(), "product": "floor"}]}


def test_sdk_strings_through_gate_verify(tmp_path, config_data):
    doc = tmp_path / "totp.json"
    doc.write_text(json.dumps(vector_document()))
    config_data["policy"] = {"formats": ["gt1", "totp"], "reentry": "allow"}
    config_data["trust"]["files"] = [str(doc)]
    path = write_config(tmp_path / "gate.toml", config_data)

    def verify(text: str, at: int) -> dict:
        run = subprocess.run([sys.executable, "-m", "gate", "verify", "--dry-run", "--config", str(path), "--at", str(at), text],
                             capture_output=True, text=True, timeout=30)
        return json.loads(run.stdout)

    assert VECTORS["display_string_example"] == "TOKEN::027612::376211::1548364791"
    for text in (VECTORS["display_string_example"], "TOKEN::027612::269251::1548364791", "TOKEN::376211", "TOKEN::269251"):
        decision = verify(text, VECTOR_TIME)
        assert decision["accepted"] and decision["format"] == "totp", (text, decision)
    assert verify(VECTORS["display_string_example"], VECTOR_TIME + 120)["reason"] == "stale_proof"
    assert verify("TOKEN::376211", VECTOR_TIME + 120)["reason"] == "stale_proof"
    assert verify("TOKEN::027612::376212::1548364791", VECTOR_TIME)["reason"] == "bad_signature"


NOW = 1_790_000_000


def test_codes_drawn_by_pyotp(verifier):
    from gate.policy import GatePolicy

    ek, ck = bytes(range(20)), bytes(range(100, 120))
    v = verifier([{"format": "totp", "event": "arena", "event_key": ek.hex(),
                   "tickets": [{"token": "sec::ti::1234", "key": ck.hex()}]}], policy=GatePolicy(reentry="allow"))

    def code(at: int, token: str = "sec::ti::1234") -> str:
        return f"{token}::{vendors.totp_code(ek, at)}::{vendors.totp_code(ck, at)}::{at}"

    decision = v.admit(code(NOW), NOW)
    assert decision.accepted, decision  # a token containing "::" is read from the right
    assert v.decide(code(NOW), NOW).reason == "replayed_proof"  # the same code twice: a screenshot
    assert v.decide(code(NOW - 30), NOW + 1).accepted  # 2 steps behind
    assert v.decide(code(NOW - 60), NOW).reason == "stale_proof"
    assert v.decide(code(NOW + 15), NOW).accepted  # 1 step ahead

    assert v.decide(code(NOW + 45), NOW).reason == "stale_proof"
    assert v.decide(code(NOW, token="other"), NOW).reason == "unknown_key"
    swapped = f"sec::ti::1234::{vendors.totp_code(ck, NOW)}::{vendors.totp_code(ek, NOW)}::{NOW}"
    assert v.decide(swapped, NOW).reason == "bad_signature"
    lied_time = f"sec::ti::1234::{vendors.totp_code(ek, NOW - 300)}::{vendors.totp_code(ck, NOW - 300)}::{NOW}"
    assert v.decide(lied_time, NOW).reason == "bad_signature"
    padded = f"sec::ti::1234::{vendors.totp_code_padded(ek, NOW)}::{vendors.totp_code_padded(ck, NOW)}::{NOW}"
    assert v.decide(padded, NOW).accepted


def test_same_code_again_after_exit_is_a_replay(verifier):
    from gate.policy import GatePolicy

    ck = bytes(range(20))
    v = verifier([{"format": "totp", "event": "arena", "short_form": True, "tickets": [{"token": "T1", "key": ck.hex()}]}],
                 policy=GatePolicy(reentry="after_exit"))
    code = f"T1::{vendors.totp_code(ck, NOW)}"
    assert v.admit(code, NOW).accepted
    assert v.admit(code, NOW + 1, direction="out").accepted
    assert v.decide(code, NOW + 2).reason == "replayed_proof"
    assert v.admit(f"T1::{vendors.totp_code(ck, NOW + 15)}", NOW + 16).accepted  # the next code is fine


def test_timestamp_form_needs_the_event_key(verifier):
    ck = bytes(range(20))
    v = verifier([{"format": "totp", "event": "arena", "short_form": True, "tickets": [{"token": "T1", "key": ck.hex()}]}])
    assert v.decide(f"T1::123456::{vendors.totp_code(ck, NOW)}::{NOW}", NOW).reason == "unknown_key"


def test_sdk_string_through_the_running_lane(tmp_path, start_lane, config_data):
    from gate.clock import FixedClock

    doc = tmp_path / "totp.json"
    doc.write_text(json.dumps(vector_document()))
    config_data["policy"] = {"formats": ["gt1", "totp"]}
    config_data["trust"]["files"] = [str(doc)]
    lane = start_lane(config_data, clock=FixedClock(VECTOR_TIME))
    decision = lane.present(VECTORS["display_string_example"])
    assert decision["accepted"] and decision["format"] == "totp"
    wait_until(lambda: len(lane.records("passage")) == 1)
    lane.idle()
    assert lane.pulses("unlock_in") == 1
    assert lane.present("TOKEN::269251", walks=False)["reason"] == "already_used"


def test_the_short_form_is_read_only_where_a_document_enables_it(verifier):
    ck = bytes(range(100, 120))
    document = {"format": "totp", "event": "arena", "tickets": [{"token": "TOKEN", "key": ck.hex()}]}
    short = f"TOKEN::{vendors.totp_code(ck, NOW)}"
    refused = verifier([document]).decide(short, NOW)
    assert refused.reason == "unreadable" and "short form" in refused.details["detail"]
    assert verifier([{**document, "short_form": True}]).decide(short, NOW).accepted


def test_guessing_codes_at_a_running_lane_locks_the_ticket_out(start_lane, config_data, tmp_path):
    from tests.support.lanes import ManualClock

    ck = bytes(range(100, 120))
    doc = tmp_path / "totp.json"
    doc.write_text(json.dumps({"format": "totp", "event": "arena", "short_form": True,
                               "tickets": [{"token": "TOKEN", "key": ck.hex()}]}))
    config_data["policy"] = {"formats": ["gt1", "totp"], "reentry": "allow"}
    config_data["trust"]["files"] = [str(doc)]
    clock = ManualClock(now=NOW)
    lane = start_lane(config_data, clock=clock)
    valid = {f(ck, NOW + 15 * s) for s in range(-2, 2) for f in (vendors.totp_code, vendors.totp_code_padded)}
    guesses = [code for code in (f"{n:06d}" for n in range(0, 10**6, 7919)) if code not in valid][:totp_limit()]
    for guess in guesses:  # someone at the scanner tries codes for a ticket token they saw
        assert lane.present(f"TOKEN::{guess}", walks=None)["reason"] == "bad_signature"
    right = f"TOKEN::{vendors.totp_code(ck, NOW)}"
    locked = lane.present(right, walks=None)
    assert locked["reason"] == "bad_signature" and "too many wrong codes" in locked["details"]["detail"]
    clock.advance(61)  # a minute later the ticket's own code is read again
    assert lane.present(f"TOKEN::{vendors.totp_code(ck, NOW + 61)}", walks=None)["accepted"]


def totp_limit() -> int:
    from gate.lane.guesses import MAX_WRONG

    return MAX_WRONG
