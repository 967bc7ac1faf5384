"""Malformed input of every format is denied (unreadable / unknown_format), never an error,
never an accept; and trust documents come in through ``gate keys import`` while the lane runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from tests.support import vendors
from tests.support.lanes import wait_until, write_config
from tests.support.parsers import NOW, every_format_trust_and_scans


@pytest.fixture
def every_format(verifier):
    docs, samples = every_format_trust_and_scans()
    v = verifier(docs)
    for sample in samples:
        assert v.decide(sample, NOW).accepted, sample
    return v, samples


def mutations(text: str, rng: random.Random):
    yield ""
    yield text[: len(text) // 2]  # truncated
    yield text[:-1]
    yield text + "A"
    yield text * 40  # huge
    yield text.replace(text[len(text) // 2], "!", 1)
    for _ in range(25):
        i = rng.randrange(len(text))
        yield text[:i] + rng.choice("0aZ+/=:-_.Q") + text[i + 1:]
    yield "".join(rng.choice("0123456789abcdef") for _ in range(194))  # eth-shaped noise
    yield "eyJ" + "A" * 40 + "." + "B" * 40 + "." + "C" * 10  # jws-shaped noise
    yield "x::123456::654321::1790000000"


def test_mutated_input_is_denied_never_error_never_accepted_twice(every_format):
    v, samples = every_format
    rng = random.Random(7)
    seen = 0
    for sample in samples:
        for text in mutations(sample, rng):
            decision = v.decide(text, NOW)
            assert decision.reason != "error", (text, decision)
            if decision.accepted:  # a mutation may only be accepted if it reads as the same ticket
                assert decision.ticket_key == v.decide(sample, NOW).ticket_key, text
            seen += 1
    assert seen > 150


def test_keys_import_reaches_the_running_lane(tmp_path, start_lane, config_data):
    key = vendors.pretix_key()
    config_data["policy"] = {"formats": ["gt1", "pretix_sig1"]}
    lane = start_lane(config_data)
    secret = vendors.pretix_secret(key, "importme", item=1)
    assert lane.present(secret, walks=False)["reason"] == "unknown_key"
    lane.idle()

    doc = tmp_path / "democon.json"
    doc.write_text(json.dumps({"format": "pretix", "event": "democon", "valid_keys": {"pretix_sig1": [vendors.pretix_valid_key(key)]}}))
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({"format": "pretix", "event": "democon", "valid_keys": {"pretix_sig1": ["AAAA"]}}))
    path = write_config(tmp_path / "gate.toml", config_data)

    def keys(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gate", "keys", *args, "--config", str(path)], capture_output=True, text=True, timeout=30)

    refused = keys("import", str(bad))
    assert refused.returncode == 2 and "pretix.valid_keys.pretix_sig1[0]" in refused.stderr
    assert keys("import", str(doc)).returncode == 0
    assert json.loads(keys("list").stdout)["name"] == "democon.json"
    decision = wait_until(lambda: (d := lane.present(secret, walks=True)) and d["reason"] != "unknown_key" and d, timeout=5)
    assert decision["accepted"], decision


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"format": "gt1", "issuers": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"])
def test_deeply_nested_documents_are_refused_before_parsing(body):
    """Even with the recursion limit raised (py_ecc raises it to 100,000 when eth-account is
    loaded), a hostile document must be an error, never a crash of the process."""
    import sys

    from gate import trust
    from gate.formats import TrustError

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)
    try:
        with pytest.raises(TrustError, match="nested deeper"):
            trust.parse_document(body, "hostile.json")
    finally:
        sys.setrecursionlimit(limit)
