"""Short-lived EdDSA proof tokens made by PyJWT, and the downgrades a forger would try."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid

import pytest

from tests.support import vendors
from tests.support.lanes import write_config

NOW = 1_790_000_000
ISSUER = "https://tickets.example"


@pytest.fixture(scope="module")
def signing_key():
    return vendors.pretix_key()  # any Ed25519 key from `cryptography`


def document(key, **extra) -> dict:
    return {"format": "jws", "issuer": ISSUER, "keys": [vendors.jwk(key, "k1")], **extra}


def claims(**overrides) -> dict:
    """A token's claims; each call a fresh ``jti`` unless one is given."""
    base = {"iss": ISSUER, "aud": "test-venue", "sub": "ticket-1", "evt": "finals", "iat": NOW, "nbf": NOW,
            "exp": NOW + 30, "jti": uuid.uuid4().hex}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_token_opens_and_denials(verifier, signing_key):
    v = verifier([document(signing_key)])
    token = vendors.proof_token(signing_key, "k1", **claims(jti="jti-1"))
    decision = v.admit(token, NOW + 1)
    assert decision.accepted and decision.format == "jws" and decision.details["event"] == "finals"
    assert v.decide(token, NOW + 2).reason == "replayed_proof"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(jti="jti-2")), NOW + 2).reason == "already_used"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", aud="lane-1")), NOW).accepted  # the gate's id
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", aud=["x", "test-venue"])), NOW).accepted
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", aud="other-venue")), NOW).reason == "wrong_event"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2")), NOW + 60).reason == "stale_proof"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", nbf=NOW + 60, exp=NOW + 90)), NOW).reason == "not_yet_valid"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", exp=NOW + 3600)), NOW).reason == "stale_proof"
    assert v.decide(vendors.proof_token(signing_key, "k9", **claims(sub="t2")), NOW).reason == "unknown_key"
    assert v.decide(vendors.proof_token(vendors.pretix_key(), "k1", **claims(sub="t2")), NOW).reason == "bad_signature"
    assert v.decide(vendors.proof_token(signing_key, "k1", **claims(sub="t2", iss="https://evil")), NOW).reason == "unknown_key"
    for missing in ("sub", "evt", "jti", "iat", "nbf", "exp"):
        assert v.decide(vendors.proof_token(signing_key, "k1", **claims(**{"sub": "t3", missing: None})), NOW).reason == "unreadable", missing


def test_a_header_nested_deeply_is_unreadable_not_an_error(verifier, signing_key):
    v = verifier([document(signing_key)])
    header = '{"alg": "EdDSA", "kid": "k1", "x": ' + "[" * 2000 + "]" * 2000 + "}"  # 4 kB: fits a QR code
    token = ".".join([base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode(),
                      *vendors.unsigned_token({}, claims()).split(".")[1:]])
    decision = v.decide(token, NOW)
    assert decision.reason == "unreadable" and "nested deeper" in decision.details["detail"]


def test_algorithm_is_pinned(verifier, signing_key):
    import jwt

    v = verifier([document(signing_key)])
    public_raw = bytes.fromhex(vendors.jwk(signing_key, "k1")["x"].encode().hex())  # any bytes a forger knows
    hs256 = jwt.encode(claims(), public_raw, algorithm="HS256", headers={"kid": "k1"})
    assert v.decide(hs256, NOW).reason == "bad_signature"
    none = vendors.unsigned_token({"alg": "none", "kid": "k1"}, claims())
    assert v.decide(none, NOW).reason == "bad_signature"
    good = vendors.proof_token(signing_key, "k1", **claims())
    header, payload, signature = good.split(".")
    forged_payload = vendors.unsigned_token({}, claims(sub="someone-else")).split(".")[1]
    assert v.decide(f"{header}.{forged_payload}.{signature}", NOW).reason == "bad_signature"
    assert v.decide(f"{header}.{payload}.{signature[:-4]}AAAA", NOW).reason == "bad_signature"


def test_each_jti_once_across_restarts(tmp_path, config_data, signing_key):
    doc = tmp_path / "jws.json"
    doc.write_text(json.dumps(document(signing_key)))
    config_data["policy"] = {"formats": ["gt1", "jws"], "reentry": "allow"}
    config_data["trust"]["files"] = [str(doc)]
    path = write_config(tmp_path / "gate.toml", config_data)
    token = vendors.proof_token(signing_key, "k1", **claims(jti="jti-1"))

    def verify(text: str) -> dict:  # each call a new process: what the ledger remembers survives
        run = subprocess.run([sys.executable, "-m", "gate", "verify", "--config", str(path), "--at", str(NOW), text],
                             capture_output=True, text=True, timeout=30)
        return json.loads(run.stdout)

    assert verify(token)["accepted"]
    assert verify(token)["reason"] == "replayed_proof"
    assert verify(vendors.proof_token(signing_key, "k1", **claims(jti="jti-2")))["accepted"]  # re-entry allowed here
