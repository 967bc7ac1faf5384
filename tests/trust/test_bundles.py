"""Signed trust bundles and revocation deltas, made, signed and loaded with the ``gate`` command
as a venue admin does, against a running lane and a real SQLite file."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from nacl.signing import SigningKey

from gate.cli import main as cli
from gate.trust import signed
from tests.formats import test_jws, test_pretix, test_totp
from tests.support import vendors
from tests.support.lanes import Lane, Tickets, base_config, wait_until, write_config
from tests.support.venue import ADMIN, STRANGER, gt1_document, held_version


class Admin:
    """The venue admin's side: ``gate bundle ...`` run in-process on the gate's config."""

    def __init__(self, tmp_path: Path, config: Path, capsys: Any) -> None:
        self.dir = tmp_path / "admin"
        self.dir.mkdir(exist_ok=True)
        self.config = config
        self.capsys = capsys
        self.key = self.dir / "admin.key"
        self.key.write_text(base64.b64encode(bytes(ADMIN)).decode() + "\n")
        self._n = 0

    def gate(self, *argv: str) -> tuple[int, Any]:
        self.capsys.readouterr()
        code = cli.main([*argv, "--config", str(self.config)])
        out = self.capsys.readouterr()
        lines = out.out.strip().splitlines()
        return code, json.loads(lines[-1]) if lines else out.err

    def file(self, name: str, content: Any) -> str:
        path = self.dir / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    def make(self, *argv: str) -> str:
        """An unsigned payload file."""
        self._n += 1
        out = str(self.dir / f"payload-{self._n}.json")
        code, _ = self.gate("bundle", "make", "--out", out, *argv)
        assert code == 0
        return out

    def sign(self, payload: str) -> str:
        out = payload.replace("payload-", "signed-")
        code, _ = self.gate("bundle", "sign", payload, "--key", str(self.key), "--out", out)
        assert code == 0
        return out

    def load(self, path: str) -> tuple[int, dict[str, Any]]:
        """``gate bundle load --config … FILE`` (options first, as a technician types it)."""
        self.capsys.readouterr()
        code = cli.main(["bundle", "load", "--config", str(self.config), path])
        return code, json.loads(self.capsys.readouterr().out.strip().splitlines()[-1])




@pytest.fixture
def admin_lane(tmp_path: Path, issuer: SigningKey, start_lane: Callable[..., Lane], capsys: Any) -> tuple[Lane, Admin]:
    """A lane that trusts nothing but the admin key: every ticket key must come in a bundle."""
    data = base_config(tmp_path, issuer)
    data["trust"] = {"admin_key": bytes(ADMIN.verify_key).hex()}
    path = write_config(tmp_path / "gate.toml", data)
    return start_lane(data), Admin(tmp_path, path, capsys)




def test_a_bundle_loaded_from_a_file_brings_keys_and_revocations(admin_lane, tickets: Tickets, issuer: SigningKey) -> None:
    lane, admin = admin_lane
    good, revoked = tickets.static(), tickets.static()
    assert lane.present(good, walks=None)["reason"] == "unknown_key"  # no issuer key yet
    lane.idle()

    payload = admin.make("--version", "7", "--documents", admin.file("gt1.json", gt1_document(issuer)), "--revoke", revoked)
    code, report = admin.load(admin.sign(payload))
    assert code == 0 and report["outcome"] == "applied", report
    held = {k: v for k, v in report["held"].items() if k != "issued_at"}
    assert held == {"version": 7, "delta": 0, "revoked": 1, "documents": 1, "delta_revoked": 0, "delta_restored": 0}
    assert abs(report["held"]["issued_at"] - time.time()) < 600

    wait_until(lambda: lane.daemon.engine.trust.get("gt1"), 5)  # the running lane takes documents in within a second
    assert lane.present(good, walks=True)["accepted"]
    lane.idle()
    assert lane.present(revoked, walks=None)["reason"] == "revoked"
    assert admin.load(admin.sign(payload)) == (0, {**report, "outcome": "current", "what": "", "version": 0})  # the same again: nothing to do


def test_forged_unsigned_older_or_foreign_bundles_are_refused_and_change_nothing(admin_lane, tickets: Tickets, issuer: SigningKey) -> None:
    lane, admin = admin_lane
    first = tickets.static()
    documents = admin.file("gt1.json", gt1_document(issuer))
    code, report = admin.load(admin.sign(admin.make("--version", "5", "--documents", documents, "--revoke", first)))
    assert code == 0
    held = report["held"]
    second = tickets.static()

    stranger_key = admin.file("stranger.key", base64.b64encode(bytes(STRANGER)).decode())
    newer = admin.make("--version", "6", "--revoke", second)  # would drop the key and revoke another ticket
    signed_newer = Path(admin.sign(newer)).read_bytes()
    envelope = json.loads(signed_newer)
    altered = {**envelope, "signed": envelope["signed"].replace('"version":6', '"version":60')}
    code, _ = admin.gate("bundle", "sign", newer, "--key", stranger_key, "--out", str(admin.dir / "by-stranger.json"))
    assert code == 0
    bad_document = admin.make("--version", "8", "--documents", admin.file("bad.json", {"format": "gt1", "issuers": [{"name": "x"}]}))
    other_venue = admin.make("--version", "9", "--venue", "another-venue")

    cases = {
        "unsigned": newer,
        "wrong_key": str(admin.dir / "by-stranger.json"),
        "bad_signature": admin.file("altered.json", altered),
        "older": admin.sign(admin.make("--version", "4", "--documents", documents)),
        "bad_documents": admin.sign(bad_document),
        "wrong_venue": admin.sign(other_venue),
        "malformed": admin.file("garbage.json", "{\"v\": 1, \"signed\": 12, \"signature\": \"AAAA\", \"key\": \"x\"}"),
    }
    for kind, path in cases.items():
        code, report = admin.load(path)
        assert code == 1 and report["outcome"] == "refused" and report["kind"] == kind, (kind, report)
        assert report["held"] == held, kind  # nothing changed
    assert held_version(lane) == (5, 0)
    wait_until(lambda: lane.daemon.engine.trust.get("gt1"), 5)
    assert lane.present(first, walks=None)["reason"] == "revoked"
    lane.idle()
    assert lane.present(second, walks=True)["accepted"]  # the key is still held, the other ticket not revoked


def test_deltas_revoke_and_restore_cumulatively(admin_lane, tickets: Tickets, issuer: SigningKey) -> None:
    lane, admin = admin_lane
    a, b, c = tickets.static(), tickets.static(), tickets.static()
    documents = admin.file("gt1.json", gt1_document(issuer))
    assert admin.load(admin.sign(admin.make("--version", "5", "--documents", documents, "--revoke", a)))[0] == 0

    first = admin.sign(admin.make("--delta", "--base", "5", "--version", "1", "--revoke", b, "--restore", a))
    code, report = admin.load(first)
    assert code == 0 and report["held"]["delta"] == 1 and report["held"]["delta_revoked"] == 1
    wait_until(lambda: lane.daemon.engine.trust.get("gt1"), 5)
    assert lane.present(b, walks=None)["reason"] == "revoked"
    lane.idle()
    assert lane.present(a, walks=True)["accepted"]  # restored
    lane.idle()

    second = admin.make("--delta", "--base", "5", "--version", "2", "--previous", first, "--revoke", c)
    code, report = admin.load(admin.sign(second))
    assert code == 0 and report["held"]["delta_revoked"] == 2 and report["held"]["delta_restored"] == 1
    assert lane.present(b, walks=None)["reason"] == "revoked"  # still: the second delta carries the first
    lane.idle()
    assert lane.present(c, walks=None)["reason"] == "revoked"
    lane.idle()

    assert admin.load(first)[1]["kind"] == "older"
    assert admin.load(admin.sign(admin.make("--delta", "--base", "6", "--version", "9", "--revoke", a)))[1]["kind"] == "no_base"
    assert admin.load(admin.sign(admin.make("--delta", "--base", "4", "--version", "9", "--revoke", a)))[1]["kind"] == "older"
    # A new bundle starts from its own list: the deltas of the old one no longer count.
    code, report = admin.load(admin.sign(admin.make("--version", "6", "--documents", documents)))
    assert code == 0 and report["held"]["delta"] == 0
    assert lane.present(b, walks=True)["accepted"]


def test_every_format_s_trust_travels_in_a_bundle(tmp_path: Path, issuer: SigningKey, tickets: Tickets, capsys: Any) -> None:
    """pretix, SafeTix TOTP, proof tokens and GT1 keys from one bundle; the vendors' tickets open."""
    from gate.lane.engine import DecisionEngine, EngineSettings, TrustSources
    from gate.policy import GatePolicy
    from gate.store import Store

    data = base_config(tmp_path, issuer)
    data["trust"] = {"admin_key": bytes(ADMIN.verify_key).hex()}
    admin = Admin(tmp_path, write_config(tmp_path / "gate.toml", data), capsys)
    jws_key = vendors.pretix_key()
    docs = [gt1_document(issuer), test_pretix.vector_document(), test_totp.vector_document(), test_jws.document(jws_key)]
    payload = admin.make("--version", "3", "--documents", *(admin.file(f"doc{i}.json", d) for i, d in enumerate(docs)))
    assert admin.load(admin.sign(payload))[0] == 0

    store = Store(tmp_path / "state" / "gate.db", "lane-1")
    assert store.trust.held().documents == 4
    settings = EngineSettings(formats=("gt1", "jws", "totp", "pretix_sig1"), gate_policy=GatePolicy(), gate_id="lane-1", venue="test-venue")
    engine = DecisionEngine(settings, TrustSources(), store)
    pretix_case = test_pretix.VECTORS["cases"][0]
    checks = [
        (tickets.static(), 1_790_000_000),
        (pretix_case["secret"], test_pretix.VECTOR_TIME),
        ("TOKEN::376211", test_totp.VECTOR_TIME),
        (vendors.proof_token(jws_key, "k1", **test_jws.claims()), test_jws.NOW + 1),
    ]
    for text, at in checks:
        decision, _ = engine.decide(text, "in", at)
        assert decision.accepted, (text[:20], decision)
    store.close()


def test_signed_messages_are_read_strictly() -> None:
    """What is verified is exactly what is read, for one purpose and one venue."""
    payload = signed.bundle_payload("v", 1, 1.0, [], signed.pack_prefixes([b"\x01" * 16, b"\x00" * 16]))
    message = signed.read(signed.sign(payload, ADMIN), bytes(ADMIN.verify_key), "v")
    assert isinstance(message, signed.Bundle) and message.revoked == b"\x00" * 16 + b"\x01" * 16
    command = signed.command_payload(signed.Command("v", "lane-1", "set_mode", 1.0, "ab" * 16, "locked"))
    assert isinstance(signed.read(signed.sign(command, ADMIN), bytes(ADMIN.verify_key), "v"), signed.Command)
    broken = [
        ({**payload, "extra": 1}, "malformed"),
        ({**payload, "revoked": {"count": 3, "prefixes": ""}}, "malformed"),
        ({**payload, "type": "bundles"}, "wrong_type"),
        ({**payload, "v": 2}, "malformed"),
        ({**command, "mode": "open"}, "malformed"),
        ({**command, "nonce": "x"}, "malformed"),
        ({**command, "command": "shutdown"}, "malformed"),
    ]
    for body, kind in broken:
        with pytest.raises(signed.SignedError) as error:
            signed.read(signed.sign(body, ADMIN), bytes(ADMIN.verify_key), "v")
        assert error.value.kind == kind, (body, error.value)
    envelope = json.loads(signed.sign(payload, ADMIN))
    spaced = json.dumps(dict(reversed(envelope.items())), indent=2).encode()  # any layout and order reads the same
    assert signed.read(spaced, bytes(ADMIN.verify_key), "v") == message
    twice = spaced.replace(b'"v": 1', b'"signed": "{}", "v": 1')  # a second "signed" would be a second reading
    for garbage in (b"", b"[" * 100_000, b'{"v":1,"key":"x","signature":"AAAA","signed":"{}"}', b"\xff" * 10, twice,
                    b'{"v": 1, "signed": ' + b"[" * 100_000 + b"}"):
        with pytest.raises(signed.SignedError):
            signed.read(garbage, bytes(ADMIN.verify_key), "v")
