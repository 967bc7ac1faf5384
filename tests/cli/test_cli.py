"""The technician's and the script's commands: keygen, issue, wallet, verify, revoke."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.lanes import write_config


def gate(*args: str, check_rc: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, timeout=30, input=stdin)
    if check_rc is not None:
        assert run.returncode == check_rc, run.stderr
    return run


@pytest.fixture
def setup(tmp_path, config_data):
    issuer = json.loads(gate("keygen", "--out", str(tmp_path / "issuer.key")).stdout)
    assert (tmp_path / "issuer.key").stat().st_mode & 0o777 == 0o600
    config_data["trust"]["gt1_issuers"][0]["public_key"] = issuer["public_key"]
    config_data["policy"]["events"] = ["gala"]
    path = write_config(tmp_path / "gate.toml", config_data)
    return tmp_path, str(path)


def verify(config: str, token: str, *extra: str, rc: int) -> dict:
    return json.loads(gate("verify", "--config", config, token, *extra, check_rc=rc).stdout)


def test_issue_verify_once_then_already_used(setup):
    tmp, config = setup
    ticket = gate("issue", "--key", str(tmp / "issuer.key"), "--event", "gala", "--class", "vip").stdout.strip()
    assert ticket.startswith("GT1:")
    first = verify(config, ticket, "--dry-run", rc=0)
    assert first["accepted"] and first["details"]["product"] == "vip" and first["format"] == "gt1"
    verify(config, ticket, rc=0)
    assert verify(config, ticket, rc=1)["reason"] == "already_used"


def test_verify_at_another_time(setup):
    tmp, config = setup
    ticket = gate(
        "issue", "--key", str(tmp / "issuer.key"), "--event", "gala",
        "--not-before", "2030-01-01T18:00:00Z", "--expires", "2030-01-02T02:00:00Z",
    ).stdout.strip()
    assert verify(config, ticket, "--dry-run", rc=1)["reason"] == "not_yet_valid"
    assert verify(config, ticket, "--dry-run", "--at", "2030-01-01T20:00:00Z", rc=0)["accepted"]
    assert verify(config, ticket, "--dry-run", "--at", "1893549600", rc=1)["reason"] == "expired"


def test_wallet_codes_rotate_and_age_out(setup):
    tmp, config = setup
    gate("keygen", "--out", str(tmp / "phone.key"))
    ticket = gate("issue", "--key", str(tmp / "issuer.key"), "--event", "gala", "--holder-key", str(tmp / "phone.key")).stdout.strip()
    assert verify(config, ticket, "--dry-run", rc=1)["reason"] == "stale_proof"
    now = int(time.time())
    code = gate("wallet", "--ticket", ticket, "--holder-key", str(tmp / "phone.key"), "--at", str(now)).stdout.strip()
    assert code.startswith("GT1R:")
    assert verify(config, code, "--dry-run", rc=0)["accepted"]
    assert verify(config, code, "--dry-run", "--at", str(now + 31), rc=1)["reason"] == "stale_proof"


def test_revoke_from_a_file_by_ticket_or_id(setup):
    tmp, config = setup
    key = str(tmp / "issuer.key")
    by_text = gate("issue", "--key", key, "--event", "gala").stdout.strip()
    by_id = gate("issue", "--key", key, "--event", "gala", "--id", "00112233445566778899").stdout.strip()
    (tmp / "revoked.txt").write_text(f"# refunds\n{by_text}\ngt1:00112233445566778899\n")
    assert json.loads(gate("revoke", "--config", config, "--file", str(tmp / "revoked.txt")).stdout) == {"revoked": 2, "already_revoked": 0}
    assert verify(config, by_text, "--dry-run", rc=1)["reason"] == "revoked"
    assert verify(config, by_id, "--dry-run", rc=1)["reason"] == "revoked"
    bad = gate("revoke", "--config", config, "not-a-ticket", check_rc=2)
    assert "entry 1" in bad.stderr


def test_tickets_read_from_standard_input_stay_off_the_process_list(setup):
    tmp, config = setup
    key = str(tmp / "issuer.key")
    shown, refunded = (gate("issue", "--key", key, "--event", "gala").stdout.strip() for _ in range(2))
    assert json.loads(gate("verify", "--config", config, "-", "--dry-run", stdin=shown + "\n").stdout)["accepted"]
    revoked = json.loads(gate("revoke", "--config", config, "-", stdin=f"# refunds\n{refunded}\n").stdout)
    assert revoked == {"revoked": 1, "already_revoked": 0}
    assert verify(config, refunded, "--dry-run", rc=1)["reason"] == "revoked"
    assert "no ticket text" in gate("verify", "--config", config, "-", stdin="", check_rc=2).stderr


def test_keys_take_their_options_anywhere(setup, tmp_path):
    tmp, config = setup
    document = tmp / "box-office.json"
    document.write_text(json.dumps({"format": "gt1", "issuers": [{"name": "box office", "public_key": "11" * 32}]}))
    gate("keys", "import", "--config", config, str(document))  # options before the file
    gate("keys", "import", str(document), "--name", "again", "--config", config)
    listed = gate("keys", "list", "--config", config).stdout
    assert "box-office" in listed and "again" in listed
    gate("keys", "remove", "again", "--config", config)
    assert "again" not in gate("keys", "list", "--config", config).stdout


def test_usage_errors_exit_2(setup):
    tmp, config = setup
    assert gate("verify", "--config", config, "x", "--at", "yesterday", check_rc=2).stderr.startswith("gate: not a time")
    assert "cannot read key file" in gate("issue", "--key", str(tmp / "nope.key"), "--event", "e", check_rc=2).stderr
    gate("verify", check_rc=2)  # argparse: token missing


def test_a_lane_s_identity_goes_into_the_roster_of_a_signed_bundle(setup, config_data):
    """As a technician does it: the lane prints its roster entry, the admin makes, signs and the
    lane loads the bundle; the lane then holds the roster. A lane on the bus without an identity
    key is a config error (exit 2)."""
    tmp, _ = setup
    config_data["sync"] = {"host": "127.0.0.1"}
    no_key = write_config(tmp / "no-key.toml", config_data)
    assert "sync.identity_file" in gate("check-config", "--config", str(no_key), check_rc=2).stderr
    gate("keygen", "--out", str(tmp / "identity.key"))
    admin = json.loads(gate("keygen", "--out", str(tmp / "admin.key")).stdout)
    config_data["sync"]["identity_file"] = str(tmp / "identity.key")
    config_data["trust"]["admin_key"] = admin["public_key"]
    config = str(write_config(tmp / "gate.toml", config_data))
    gate("check-config", "--config", config)
    entry = json.loads(gate("identity", "--config", config).stdout)
    assert entry["gate"] == "lane-1" and entry["directions"] == ["in", "out"]
    (tmp / "roster.json").write_text(json.dumps({"gates": [entry, {**entry, "gate": "lane-0", "retired": True}]}))
    made = gate("bundle", "make", "--config", config, "--version", "3", "--roster", str(tmp / "roster.json"), "--out", str(tmp / "b.json"))
    assert json.loads(made.stdout)["gates"] == 2
    gate("bundle", "sign", str(tmp / "b.json"), "--key", str(tmp / "admin.key"), "--out", str(tmp / "s.json"))
    loaded = json.loads(gate("bundle", "load", "--config", config, str(tmp / "s.json")).stdout)
    assert loaded["outcome"] == "applied"

    from gate.store import Store

    store = Store(tmp / "state" / "gate.db", "lane-1", read_only=True)
    try:
        rows = {row.gate: row for row in store.trust.roster()}
    finally:
        store.close()
    assert set(rows) == {"lane-0", "lane-1"} and rows["lane-0"].retired and not rows["lane-1"].retired
    (tmp / "bad-roster.json").write_text(json.dumps({"gates": [{**entry, "public_key": "short"}]}))
    bad = gate("bundle", "make", "--config", config, "--roster", str(tmp / "bad-roster.json"), check_rc=2)
    assert "roster" in bad.stderr and "public_key" in bad.stderr


def test_check_config_warns_of_a_broker_password_over_plain_text(setup, config_data):
    """A [sync] with a password and no TLS works, so check-config says ok (exit 0), and it
    warns that anyone on the venue network can read the password; with the venue CA (TLS) it
    does not."""
    tmp, _ = setup
    gate("keygen", "--out", str(tmp / "identity.key"))
    (tmp / "broker.pw").write_text("s3cret-broker-pw\n")
    config_data["sync"] = {"host": "broker.venue.lan", "password_file": "broker.pw", "identity_file": "identity.key"}
    plain = gate("check-config", "--config", str(write_config(tmp / "plain.toml", config_data)))
    assert ": ok (gate lane-1" in plain.stdout
    assert "  warning: sync: a password over plain text" in plain.stdout
    assert "s3cret-broker-pw" not in plain.stdout + plain.stderr

    (tmp / "venue-ca.crt").write_text("the venue CA (docs/mqtt.md)\n")
    config_data["sync"].update({"port": 8883, "ca_file": "venue-ca.crt"})
    tls = gate("check-config", "--config", str(write_config(tmp / "tls.toml", config_data)))
    assert ": ok (gate lane-1" in tls.stdout and "warning" not in tls.stdout
