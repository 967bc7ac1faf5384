"""Every parser of gate as a fuzz target: bytes in, properties checked.

Used by the property-based tests (tests/system/test_properties.py, hypothesis) and by the
coverage-guided fuzzer (scripts/fuzz, atheris). A target returns when the input was handled as
it must be, and raises when a property broke: an ``AssertionError`` naming it, or the unexpected
exception itself (a crash). Each target also has seeds: valid inputs that mutations start from.

The properties, for every target:
- no exception other than the parser's own refusal (a crash of the lane's loop is the failure);
- a mutated signed input is never accepted: only an input that reads as one of the seeds (the
  same ticket, the same signed text) may be accepted;
- nothing already recorded is lost: the lane's own ledger records and the trust it holds are
  unchanged by anything refused.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import cbor2
from eth_account import Account
from nacl.signing import SigningKey

from gate import config as gate_config
from gate import trust
from gate.config import ConfigError, SyncConfig
from gate.formats import TrustError, b45, gt1
from gate.lane.engine import DecisionEngine, EngineSettings, TrustSources
from gate.store import RosterRow, Store
from gate.store import ledger as records
from gate.sync import messages
from gate.sync.client import VenueSync
from gate.trust import bundles, signed
from gate.trust.commands import CommandGuard
from gate.trust.records import sealer
from gate.trust.signed import Command, SignedError
from tests.support import vendors
from tests.support.lanes import ALL_FORMATS, EVENT, base_config

NOW = 1_790_000_000
GATE = "lane-1"
VENUE = "test-venue"
ADMIN = SigningKey(b"\x07" * 32)
PEER = "gate-2"
PEER_KEY = SigningKey(b"\x05" * 32)
ISSUER = SigningKey(b"\x01" * 32)
HOLDER = SigningKey(b"\x02" * 32)
NONCE = bytes(range(16))
MAX_LINE = 64


class Targets:
    """The parsers, on one real ledger file, with a valid sample of everything they read."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gate-fuzz-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.store = Store(workdir / "fuzz.db", GATE)
        self.ledger = self.store.ledger
        docs, scans = every_format_trust_and_scans()
        parsed = tuple(trust.parse_document(json.dumps(d), f"doc{i}") for i, d in enumerate(docs))
        settings = EngineSettings(formats=ALL_FORMATS, gate_id=GATE, venue=VENUE)
        self.engine = DecisionEngine(settings, TrustSources(documents=parsed), self.store)
        self.scans = scans
        self.valid_ticket_keys = {self.engine.decide(s, "in", NOW)[0].ticket_key for s in scans}
        assert all(self.engine.decide(s, "in", NOW)[0].accepted for s in scans), "a seed scan is not accepted"
        cose = gt1.issue(ISSUER, gt1.build_claims(cti=b"\x42" * 16, event=EVENT, holder_key=bytes(HOLDER.verify_key)))
        cti = gt1.parse_claims(gt1.parse_sign1(cose).payload).cti
        proof = HOLDER.sign(gt1.nfc_message(cti, NOW, NONCE, GATE)).signature
        self.nfc_answers = [cbor2.dumps([cose, NOW, proof]), cbor2.dumps([gt1.issue(ISSUER, gt1.build_claims(cti=b"\x43" * 16, event=EVENT))])]
        for answer in self.nfc_answers:
            assert self.engine.decide_tap(answer, NONCE, GATE, "in", NOW)[0].accepted, "a seed NFC answer is not accepted"
        # Something already recorded, which nothing refused may take away.
        self.ledger.append(records.ADMISSION, NOW, ticket_key="ab" * 32, format="gt1", direction="in")
        self.store.revocations.revoke([("cd" * 32, "refunded")], NOW)
        self.admin_public = bytes(ADMIN.verify_key)
        issued = float(NOW)  # fixed: the fuzzer's seeds and its child process's targets must agree
        self.signed_messages = [
            signed.sign(signed.bundle_payload(VENUE, 5, issued, docs[:1], bytes(range(16))), ADMIN),
            signed.sign(signed.delta_payload(VENUE, 5, 6, issued, bytes(16), b""), ADMIN),
        ]
        self.commands = [signed.sign(signed.command_payload(Command(VENUE, GATE, "set_mode", issued, "n" * 32, mode="locked")), ADMIN)]
        self.signed_texts = {json.loads(m)["signed"] for m in self.signed_messages + self.commands}
        self.guard = CommandGuard(self.store.state, GATE, VENUE, self.admin_public, max_age=10**9)
        with self.store.db.transaction():  # a peer on the roster, whose sealed records the bus seeds carry
            self.store.trust.replace_roster([RosterRow(PEER, bytes(PEER_KEY.verify_key), None, ("in", "out"), False)])
        self.sync = VenueSync(SyncConfig(host="127.0.0.1", topic_root=f"gate/v2/{VENUE}/"), GATE, self.store, venue=VENUE,
                              on_bundle=lambda kind, payload: self._check_signed(payload), on_command=self._command_result)
        self.pumped = 0
        self.config_text = _toml(base_config(workdir, ISSUER))
        self.records = [
            messages.encode_records(PEER, [sealer(PEER_KEY, VENUE)(
                records.Record(PEER, 1, records.ADMISSION, NOW, "ef" * 32, "gt1", "in", epoch="e1"))]),
            messages.encode_request(messages.Request(GATE, {(PEER, "e1"): 3, (GATE, self.store.epoch): 1}, all=True)),
        ]

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- what must never change ----------------------------------------------------------------

    def _own_records(self) -> list[tuple[Any, ...]]:
        return self.ledger.records(GATE)

    def _kept(self) -> tuple[Any, ...]:
        return (self._own_records(), self.store.revocations.is_revoked("cd" * 32))

    # --- the targets --------------------------------------------------------------------------

    def scan(self, data: bytes) -> None:
        """A line from a scanner or the camera, in every enabled format."""
        text = data.decode("utf-8", errors="replace")
        decision = self.engine.decide(text, "in", NOW)[0]
        assert decision.reason != "error", f"error on {text[:80]!r}"
        if decision.accepted:
            assert decision.ticket_key in self.valid_ticket_keys, f"accepted a ticket that was never issued: {text[:80]!r}"

    def nfc(self, data: bytes) -> None:
        """A phone's answer to this gate's NFC challenge."""
        decision = self.engine.decide_tap(data, NONCE, GATE, "in", NOW)[0]
        assert decision.reason != "error", f"error on {data[:80]!r}"
        if decision.accepted:
            accepted = {self.engine.decide_tap(a, NONCE, GATE, "in", NOW)[0].ticket_key for a in self.nfc_answers}
            assert decision.ticket_key in accepted, f"accepted an NFC answer that was never issued: {data[:80]!r}"

    def scanner_bytes(self, data: bytes) -> None:
        """What a serial scanner sends, cut into reads at arbitrary places."""
        from drivers.serial_scanner import LineFramer

        framer = LineFramer(MAX_LINE)
        cut = (data[0] % 7 + 1) if data else 1
        lines = []
        for i in range(0, len(data), cut):
            lines += framer.feed(data[i : i + cut])
        *complete, _partial = re.split(rb"[\r\n]", data)
        expected = [segment for segment in complete if 0 < len(segment) <= MAX_LINE]
        assert lines == expected, f"framed {lines!r}, expected {expected!r}"
        for line in lines:
            self.scan(line)

    def bus(self, data: bytes) -> None:
        """A message on the venue bus, on any topic a gate subscribes to."""
        kept = self._kept()
        topics = [f"gate/v2/{VENUE}/ledger/gate-2", f"gate/v2/{VENUE}/ledger/{GATE}", f"gate/v2/{VENUE}/sync/request/gate-2",
                  f"gate/v2/{VENUE}/bundle", f"gate/v2/{VENUE}/bundle/delta", f"gate/v2/{VENUE}/gates/{GATE}/cmd",
                  f"gate/v2/{VENUE}/ledger/../{GATE}", f"gate/v2/{VENUE}/elsewhere", f"gate/v2/{VENUE}/sync/reply/{GATE}/gate-2",
                  f"gate/v2/{VENUE}/gates/gate-2/status"]
        topic = topics[data[0] % len(topics)] if data else topics[0]
        self.sync._on_message(None, None, SimpleNamespace(topic=topic, payload=data[1:]))  # as paho's thread delivers it
        self.pumped += 1
        self.sync.pump(NOW + self.pumped * 0.1)  # each message its own turn (merges wait MERGE_INTERVAL after one)
        assert self._kept() == kept, "a bus message changed this gate's own records or revocations"

    def signed_message(self, data: bytes) -> None:
        """A signed bundle or delta (file or bus), and a signed command."""
        self._check_signed(data)
        self._command_result(data)

    def _check_signed(self, data: bytes) -> None:
        kept_before = self._kept()
        before = self.store.trust.held()
        report = bundles.receive(self.store, data, self.admin_public, VENUE)
        if report.outcome == bundles.Outcome.REFUSED:
            assert self.store.trust.held() == before, "a refused bundle changed what the gate holds"
            assert self._kept() == kept_before
        elif report.outcome != bundles.Outcome.CURRENT:
            assert _signed_text(data) in self.signed_texts, f"applied a bundle that was never signed: {data[:80]!r}"

    def _command_result(self, data: bytes) -> dict[str, Any]:
        try:
            command = self.guard.check(data, time.time())
        except SignedError as exc:
            return {"nonce": exc.nonce, "ok": False, "text": str(exc), "kind": exc.kind}
        assert _signed_text(data) in self.signed_texts, f"took a command that was never signed: {data[:80]!r}"
        return {"nonce": command.nonce, "ok": True, "text": "done"}

    def trust_document(self, data: bytes) -> None:
        """A trust document (``gate keys import``, a bundle's documents)."""
        try:
            trust.parse_document(data, "fuzz.json")
        except TrustError:
            pass

    def config(self, data: bytes) -> None:
        """gate.toml: any problem is a ConfigError naming it, before the lane starts."""
        path = self.workdir / "fuzz.toml"
        path.write_bytes(data)
        try:
            gate_config.load(path)
        except ConfigError:
            pass

    def gt1_cose(self, data: bytes) -> None:
        """GT1's COSE_Sign1 and claims, below the scan text (base45 too)."""
        try:
            gt1.parse_claims(gt1.parse_sign1(data).payload)
        except gt1.Unreadable:
            pass
        try:
            b45.b45decode(data.decode("latin-1"))
        except ValueError:
            pass

    # --- seeds --------------------------------------------------------------------------------

    def seeds(self) -> dict[str, list[bytes]]:
        return {
            "scan": [s.encode() for s in self.scans],
            "nfc": list(self.nfc_answers),
            "scanner_bytes": [b"\x03" + self.scans[0].encode() + b"\r\n" + b"x" * 70 + b"\n" + self.scans[1].encode() + b"\r"],
            "bus": [bytes([i]) + payload for i, payload in ((0, self.records[0]), (2, self.records[1]), (3, self.signed_messages[0]),
                                                             (4, self.signed_messages[1]), (5, self.commands[0]))],
            "signed_message": self.signed_messages + self.commands,
            "trust_document": [json.dumps(d).encode() for d in every_format_trust_and_scans()[0]],
            "config": [self.config_text.encode()],
            "gt1_cose": [cbor2.loads(self.nfc_answers[0])[0]],
        }

    def all(self) -> dict[str, Callable[[bytes], Any]]:
        return {name: getattr(self, name) for name in self.seeds()}


def _signed_text(data: bytes) -> str | None:
    try:
        return json.loads(data)["signed"]
    except Exception:
        return None


def _toml(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)


def every_format_trust_and_scans() -> tuple[list[dict[str, Any]], list[str]]:
    """A trust document of every format and one valid scan of each (decided at NOW)."""
    pretix_key, jws_key = _key(1), _key(2)
    owner = Account.from_key(b"\x11" * 32)
    contract = "0x" + "ab" * 20
    docs = [
        {"format": "gt1", "issuers": [{"public_key": base64.b64encode(bytes(ISSUER.verify_key)).decode()}]},
        {"format": "pretix", "event": "democon", "valid_keys": {"pretix_sig1": [vendors.pretix_valid_key(pretix_key)]},
         "valid_secrets": [{"secret": "abcdefghjkmnpqrstuvwxyz234567892", "item": 1}]},
        {"format": "totp", "event": "arena", "event_key": "00" * 20, "tickets": [{"token": "T1", "key": "11" * 20}]},
        {"format": "eth_qr", "event": "expo", "contract": contract, "owners": {"00" * 32: owner.address}},
        {"format": "jws", "issuer": "iss", "keys": [vendors.jwk(jws_key, "k1")]},
    ]
    scans = [
        gt1.encode_static(gt1.issue(ISSUER, gt1.build_claims(cti=b"\x41" * 16, event=EVENT))),
        gt1.encode_rotating(gt1.issue(ISSUER, gt1.build_claims(cti=b"\x44" * 16, event=EVENT, holder_key=bytes(HOLDER.verify_key))),
                            HOLDER, NOW),
        vendors.pretix_secret(pretix_key, "seedseed", item=1),
        "abcdefghjkmnpqrstuvwxyz234567892",
        f"T1::{vendors.totp_code(bytes.fromhex('00' * 20), NOW)}::{vendors.totp_code(bytes.fromhex('11' * 20), NOW)}::{NOW}",
        vendors.eth_qr(owner, contract, bytes(32), NOW),
        vendors.proof_token(jws_key, "k1", iss="iss", aud=VENUE, sub="s", evt="e", iat=NOW, nbf=NOW, exp=NOW + 30, jti="j"),
    ]
    return docs, scans


def _key(n: int) -> Any:
    """A fixed Ed25519 key of the ``cryptography`` package (vendors' tickets are made with it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)
