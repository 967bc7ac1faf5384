"""The technician's and the script's commands: keygen, issue, wallet, verify, revoke."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.lanes import write_config


def gate(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, timeout=30)
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


def test_usage_errors_exit_2(setup):
    tmp, config = setup
    assert gate("verify", "--config", config, "x", "--at", "yesterday", check_rc=2).stderr.startswith("gate: not a time")
    assert "cannot read key file" in gate("issue", "--key", str(tmp / "nope.key"), "--event", "e", check_rc=2).stderr
    gate("verify", check_rc=2)  # argparse: token missing
