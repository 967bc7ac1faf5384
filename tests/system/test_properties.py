"""Property-based tests (hypothesis) of every parser: scans of every format, NFC answers, scanner
bytes, venue-bus messages, signed bundles and commands, trust documents and the config.

The inputs are arbitrary bytes, and mutations of valid inputs (bytes flipped, inserted, deleted,
cut off, pieces spliced in), which reach far deeper into a parser than noise does. The
properties are the ones tests/support/parsers.py checks: no crash, no accept of anything that was never
signed, nothing already recorded lost. ``GATE_PROPERTY_EXAMPLES`` sets the examples per target
(300 here; the figures in RELIABILITY.md come from longer runs and from scripts/fuzz).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate import config as gate_config
from gate.config import ConfigError
from gate.sync import messages
from tests.support.parsers import Targets

EXAMPLES = int(os.environ.get("GATE_PROPERTY_EXAMPLES", "300"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TARGETS = ("scan", "nfc", "scanner_bytes", "bus", "signed_message", "trust_document", "config", "gt1_cose")


@pytest.fixture(scope="module")
def targets():
    logging.disable(logging.WARNING)  # every refusal is logged; thousands of them are noise here
    made = Targets()
    yield made
    made.close()
    logging.disable(logging.NOTSET)


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "splice", "repeat"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "cut":
            data = data[:at]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start : start + draw(st.integers(1, 64))]
        elif op == "repeat" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(2, 50))
    return bytes(data)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutated(seeds), mutated(seeds))


@pytest.mark.parametrize("name", TARGETS)
def test_parser_holds_on_hostile_input(targets, name):
    seeds = targets.seeds()[name]
    target = targets.all()[name]
    for seed in seeds:
        target(seed)  # the seeds themselves pass (and are accepted where they are tickets)

    @PROPERTY
    @given(inputs(seeds))
    def holds(data: bytes) -> None:
        target(data)

    holds()


# --- structured inputs: valid shapes with one field wrong --------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _paths(value, prefix + (i,))
    return found


@st.composite
def edited(draw: Any, base: Any) -> Any:
    """``base`` with a few of its values replaced by arbitrary JSON, keys removed or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(JSON)
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(JSON)
    return doc


def test_config_with_any_field_wrong_is_a_config_error(tmp_path):
    from tests.support.lanes import base_config
    from tests.support.parsers import ISSUER

    base = base_config(tmp_path, ISSUER)
    gate_config.parse(copy.deepcopy(base), "gate.toml")  # the base is valid

    @PROPERTY
    @given(edited(base))
    def holds(data: dict[str, Any]) -> None:
        try:
            gate_config.parse(data, "gate.toml")
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)

    holds()


def test_bus_messages_with_any_field_wrong_are_refused_or_merged_never_crash(targets):
    import json

    from gate.errors import SignedError
    from gate.trust.records import open_record

    ledger_doc = json.loads(targets.records[0])
    request_doc = json.loads(targets.records[1])
    seeded = ledger_doc["records"][0]["signed"]
    before = targets._kept()

    @PROPERTY
    @given(st.sampled_from([(0, ledger_doc), (2, request_doc)]).flatmap(lambda p: st.tuples(st.just(p[0]), edited(p[1]))))
    def holds(pick: tuple[int, Any]) -> None:
        topic, doc = pick
        payload = json.dumps(doc, allow_nan=True).encode()
        try:
            decoded = messages.decode_records(payload, "gate-2") if topic == 0 else messages.decode_request(payload)
        except messages.MessageError:
            decoded = None
        if topic == 0 and decoded is not None:
            for text, signature in decoded:  # only what gate-2's key signed opens, unchanged
                try:
                    record = open_record(text, signature, targets.sync.roster, "test-venue", "gate-2")
                except SignedError:
                    continue
                assert record.origin == "gate-2" and text == seeded
        targets.bus(bytes([topic]) + payload)

    holds()
    assert targets._kept() == before


# --- what the fuzzer found (scripts/fuzz), kept fixed ----------------------------------------


def test_a_key_with_non_ascii_text_is_a_trust_error_not_a_crash(tmp_path):
    """b64decode refuses non-ASCII text with a plain ValueError, which escaped ``gate keys
    import`` and start-up (found by scripts/fuzz, target trust_document and config)."""
    from gate import trust
    from gate.formats import TrustError
    from tests.support.lanes import base_config, write_config
    from tests.support.parsers import ISSUER

    with pytest.raises(TrustError, match='"format" must be one of'):
        trust.parse_document('{"format": ["gt1"]}', "doc.json")  # an unhashable format (atheris, later run)
    with pytest.raises(TrustError, match="public_key: not hex or base64"):
        trust.parse_document('{"format": "gt1", "issuers": [{"public_key": "AAAAé"}]}', "doc.json")
    data = base_config(tmp_path, ISSUER)
    data["trust"]["gt1_issuers"][0]["public_key"] = "ÄÖ" * 22
    with pytest.raises(ConfigError, match="not hex or base64"):
        gate_config.load(write_config(tmp_path / "gate.toml", data))


def test_names_with_a_trailing_newline_are_refused():
    """``$`` matches before a final newline: a gate id, venue or nonce read with it let
    "gate-2\n" through as a name (found while reviewing the fuzzer's findings)."""
    from gate.sync.messages import Topics

    topics = Topics("gate/v2/v/", "lane-1")
    assert topics.sender("gate/v2/v/ledger/gate-2", "ledger") == "gate-2"
    assert topics.sender("gate/v2/v/ledger/gate-2\n", "ledger") is None
    with pytest.raises(messages.MessageError):
        messages.decode_records(b'{"v": 1, "origin": "gate-2\\n", "records": []}', "gate-2\n")


def test_a_signature_with_non_ascii_text_is_a_refusal_not_a_crash_of_the_bus_thread():
    """b64decode refuses non-ASCII text with a plain ValueError, which escaped a ledger message's
    reading on paho's network thread (found by scripts/fuzz, target bus)."""
    payload = '{"v": 2, "origin": "gate-2", "records": [{"signed": "{}", "sig": "AAÄÄ"}]}'.encode()
    with pytest.raises(messages.MessageError, match="sig: not base64"):
        messages.decode_records(payload, "gate-2")
    with pytest.raises(messages.MessageError, match="sig: not base64"):
        messages.decode_reply(payload.replace(b'"origin"', b'"from"'))
