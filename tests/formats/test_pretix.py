"""pretix tickets: libpretixsync's own secrets and keys, and secrets made the way pretix makes
them, through the engine, ``gate verify`` and the running lane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gate.clock import FixedClock
from gate.formats import pretix
from tests.support import vendors
from tests.support.lanes import write_config
from tests.support.vendors import VECTOR_DIR

VECTORS = json.loads((VECTOR_DIR / "pretix-sig1-libpretixsync.json").read_text())
# Between the not-yet-valid secret's start and the no-longer-valid secret's end (2023-02-03).
VECTOR_TIME = 1675440000
VECTOR_OUTCOMES = {
    "testSignedAndValid": "ok",
    "testSignedAndValidServerId": "ok",
    "testSignedAndNotYetValid": "not_yet_valid",
    "testSignedAndNotLongerValid": "expired",
    "testSignedUnknownProduct": "wrong_product",
    "testSignedInvalidSignature": "bad_signature",
}


def vector_document() -> dict:
    return {
        "format": "pretix",
        "event": "event1",
        "valid_keys": {"pretix_sig1": VECTORS["valid_keys_pretix_sig1"]},
        "checkin_list": {"all_products": False, "limit_products": [1, 42]},
    }


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_payloads_decode_as_pretix_says(case):
    if case["decoded"] is None:
        return
    payload, _ = pretix.split_sig1(case["secret"])
    ticket = pretix.parse_payload(payload)
    expected = case["decoded"]
    assert (ticket.seed, ticket.item, ticket.variation, ticket.subevent) == (
        expected["seed"], expected["item"], expected["variation"], expected["subevent"])
    assert ticket.valid_from == expected.get("validFromUnixTime", 0)
    assert ticket.valid_until == expected.get("validUntilUnixTime", 0)


@pytest.fixture
def vector_config(tmp_path, config_data):
    doc = tmp_path / "pretix-event1.json"
    doc.write_text(json.dumps(vector_document()))
    config_data["policy"] = {"formats": ["gt1", "pretix_sig1"]}
    config_data["trust"]["files"] = [str(doc)]
    return config_data


def test_every_vector_through_gate_verify(tmp_path, vector_config):
    path = write_config(tmp_path / "gate.toml", vector_config)
    for case in VECTORS["cases"]:
        run = subprocess.run([sys.executable, "-m", "gate", "verify", "--config", str(path), "--at", str(VECTOR_TIME), case["secret"]],
                             capture_output=True, text=True, timeout=30)
        decision = json.loads(run.stdout)
        assert decision["reason"] == VECTOR_OUTCOMES[case["name"]], (case["name"], decision)
        assert run.returncode == (0 if decision["accepted"] else 1)
    # The valid ones were recorded: shown again, they are used.
    again = subprocess.run([sys.executable, "-m", "gate", "verify", "--config", str(path), "--at", str(VECTOR_TIME),
                            VECTORS["cases"][0]["secret"]], capture_output=True, text=True, timeout=30)
    assert json.loads(again.stdout)["reason"] == "already_used"


def test_every_vector_through_the_running_lane(start_lane, vector_config):
    lane = start_lane(vector_config, clock=FixedClock(VECTOR_TIME))
    for case in VECTORS["cases"]:
        expected = VECTOR_OUTCOMES[case["name"]]
        decision = lane.present(case["secret"], walks=expected == "ok")
        assert decision["reason"] == expected, (case["name"], decision)
        assert decision["format"] == "pretix_sig1"
        lane.idle()
    assert lane.pulses("unlock_in") == 2
    assert len(lane.records("admission")) == 2


# --- secrets made as pretix makes them ------------------------------------------------------

NOW = 1_790_000_000


@pytest.fixture
def event_key():
    return vendors.pretix_key()


def document(key, **overrides) -> dict:
    doc = {"format": "pretix", "event": "democon", "valid_keys": {"pretix_sig1": [vendors.pretix_valid_key(key)]}}
    doc.update(overrides)
    return doc


def test_checks_in_pretixscan_order(verifier, event_key):
    secret = vendors.pretix_secret(event_key, "seed0001", item=7, valid_until=NOW - 10)
    # Revoked and blocked and expired and wrong product: pretixSCAN says revoked first.
    v = verifier([document(event_key, revoked_secrets=[secret], blocked_secrets=[secret],
                           checkin_list={"all_products": False, "limit_products": [1]})])
    assert v.decide(secret, NOW).reason == "revoked"
    v = verifier([document(event_key, blocked_secrets=[secret], checkin_list={"all_products": False, "limit_products": [1]})])
    assert v.decide(secret, NOW).reason == "blocked"
    v = verifier([document(event_key, checkin_list={"all_products": False, "limit_products": [1]})])
    assert v.decide(secret, NOW).reason == "expired"
    assert v.decide(secret, NOW - 20).reason == "wrong_product"


def test_accepts_and_denies_like_pretix(verifier, event_key):
    other_key = vendors.pretix_key()
    v = verifier([document(event_key, checkin_list={"all_products": False, "limit_products": [7], "subevent": 3})])
    good = vendors.pretix_secret(event_key, "seedgood", item=7, subevent=3, valid_from=NOW - 60, valid_until=NOW + 60)
    decision = v.decide(good, NOW)
    assert decision.accepted and decision.format == "pretix_sig1" and decision.details["event"] == "democon"
    assert v.decide(vendors.pretix_secret(other_key, "seedgood", item=7, subevent=3), NOW).reason == "bad_signature"
    assert v.decide(vendors.pretix_secret(event_key, "seed0002", item=8, subevent=3), NOW).reason == "wrong_product"
    assert v.decide(vendors.pretix_secret(event_key, "seed0003", item=7, subevent=4), NOW).reason == "wrong_event"
    assert v.decide(vendors.pretix_secret(event_key, "seed0004", item=7, subevent=3, valid_from=NOW + 5), NOW).reason == "not_yet_valid"
    assert v.decide(good, NOW + 61).reason == "expired"


def test_every_tampered_byte_is_refused(verifier, event_key):
    v = verifier([document(event_key)])
    secret = vendors.pretix_secret(event_key, "tamperme", item=1)
    raw = bytearray(__import__("base64").b64decode(secret[::-1]))
    for i in range(5, len(raw)):
        raw[i] ^= 0x01
        forged = __import__("base64").b64encode(bytes(raw)).decode()[::-1]
        raw[i] ^= 0x01
        assert v.decide(forged, NOW).reason in ("bad_signature", "unreadable"), i


def test_non_canonical_base64_is_not_a_second_ticket(verifier, event_key):
    v = verifier([document(event_key)])
    secret = vendors.pretix_secret(event_key, "canonical", item=1)
    assert v.admit(secret, NOW).accepted
    # Flip the unused low bits of the last base64 character (the text's first, reversed).
    # Standard decoders read the same bytes; the gate refuses the variant.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = secret.lstrip("=")
    variant = secret[: len(secret) - len(body)] + alphabet[alphabet.index(body[0]) ^ 1] + body[1:]
    assert __import__("base64").b64decode(variant[::-1]) == __import__("base64").b64decode(secret[::-1])
    assert v.decide(variant, NOW).reason == "unreadable"
    assert v.decide(secret, NOW).reason == "already_used"


def test_checkin_list_entry_rules(verifier, event_key):
    once = verifier([document(event_key, checkin_list={"allow_entry_after_exit": False})])
    secret = vendors.pretix_secret(event_key, "oneentry", item=1)
    assert once.admit(secret, NOW).accepted
    assert once.admit(secret, NOW, direction="out").accepted
    assert once.decide(secret, NOW).reason == "already_used"

    after_exit = verifier([document(event_key, checkin_list={"allow_entry_after_exit": True})])
    assert after_exit.admit(secret, NOW).accepted
    assert after_exit.decide(secret, NOW).reason == "already_used"
    assert after_exit.admit(secret, NOW, direction="out").accepted
    assert after_exit.admit(secret, NOW).accepted

    multiple = verifier([document(event_key, checkin_list={"allow_multiple_entries": True})])
    for _ in range(3):
        assert multiple.admit(secret, NOW).accepted


def test_random_secrets_against_the_synced_list(verifier, event_key):
    v = verifier([{
        "format": "pretix", "event": "democon",
        "checkin_list": {"all_products": False, "limit_products": [1]},
        "valid_secrets": [{"secret": "abcdefghjkmnpqrstuvwxyz234567892", "item": 1},
                          {"secret": "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "item": 2}],
        "revoked_secrets": ["qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"],
    }])
    decision = v.admit("abcdefghjkmnpqrstuvwxyz234567892", NOW)
    assert decision.accepted and decision.format == "pretix_random"
    assert v.decide("abcdefghjkmnpqrstuvwxyz234567892", NOW).reason == "already_used"
    assert v.decide("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", NOW).reason == "wrong_product"
    assert v.decide("qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", NOW).reason == "revoked"
    assert v.decide("mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm", NOW).reason == "unknown_key"


def test_random_secrets_of_every_length_pretix_allows(verifier, event_key):
    short, longest = "abcd2345wxyz", "k" * 64  # pretix lets an organizer choose 12 to 64 characters
    v = verifier([{"format": "pretix", "event": "democon",
                   "valid_secrets": [{"secret": short, "item": 1}, {"secret": longest, "item": 1}]}])
    assert v.admit(short, NOW).accepted and v.admit(longest, NOW).accepted
    assert v.decide("abcd2345wxy", NOW).reason == "unknown_format"  # 11 characters: no pretix secret


def test_product_and_date_are_checked_on_exit_too_as_libpretixsync_does(verifier, event_key):
    v = verifier([document(event_key, checkin_list={"all_products": False, "limit_products": [7], "subevent": 3})])
    other_product = vendors.pretix_secret(event_key, "seedexit", item=8, subevent=3)
    other_date = vendors.pretix_secret(event_key, "seedexi2", item=7, subevent=4)
    expired = vendors.pretix_secret(event_key, "seedexi3", item=7, subevent=3, valid_until=NOW - 60)
    assert v.decide(other_product, NOW, direction="out").reason == "wrong_product"
    assert v.decide(other_date, NOW, direction="out").reason == "wrong_event"
    assert v.decide(expired, NOW, direction="out").accepted  # the validity window is for entries only


@pytest.mark.parametrize("bad, problem", [
    ({"format": "pretix", "event": "x"}, "nothing could be verified"),
    ({"format": "pretix", "event": "x", "valid_keys": {"pretix_sig1": ["bm90IGEga2V5"]}}, "not base64 of a PEM public key"),
    ({"format": "pretix", "event": "x", "valid_secrets": [{"secret": "a" * 32}]}, "valid_secrets[0].item: required"),
    ({"format": "pretix", "event": "x", "valid_secrets": [], "checkin_list": {"all_prodcuts": False}}, "unknown field(s) all_prodcuts"),
])
def test_bad_trust_documents_are_refused_by_name(verifier, bad, problem):
    from gate.formats import TrustError

    with pytest.raises(TrustError, match="doc0: pretix") as raised:
        verifier([bad])
    assert problem in str(raised.value)


def test_vectors_are_the_shared_ones():
    shared = Path(__file__).resolve().parents[3] / "shared" / "vectors"
    if not shared.is_dir():
        pytest.skip("no ../shared/vectors beside this clone")
    for name in ("pretix-sig1-libpretixsync.json", "safetix-totp.json"):
        assert (VECTOR_DIR / name).read_bytes() == (shared / name).read_bytes(), name
