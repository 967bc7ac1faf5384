"""``gate doctor``'s hints fit an 80-column ssh session: every failure doctor can report says what
to do in at most 80 characters, and ``--verbose`` adds the details (the why, the long fix)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hwsim.broker import free_port

from gate.field.doctor import HINT_MAX, Doctor
from tests.support.lanes import write_config

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "gate" / "field" / "doctor.py", REPO / "gate" / "cli" / "field.py"]


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate", "doctor", "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short state path, as /var/lib/gate is (pytest's own paths are longer than a lane's)."""
    path = Path(tempfile.mkdtemp(prefix="gd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def failing_everywhere(config_data: dict[str, Any], short_dir: Path, ledger: str) -> dict[str, Any]:
    """A stopped lane whose every part is broken: scanner unplugged, NFC reader and camera missing,
    broker down, a format without keys, the clock not synchronized, the ledger corrupt or not there."""
    state = short_dir / "state"
    state.mkdir()
    if ledger == "corrupt":
        (state / "gate.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    config_data["gate"]["state_dir"] = str(state)
    config_data["scanner"]["port"] = str(short_dir / "no-scanner")
    config_data["nfc"] = {"device": "usb:ffff:fffe"}
    config_data["camera"] = {"source": "picamera2"}
    config_data["policy"]["formats"] = ["gt1", "pretix_sig1"]
    config_data["simulator"]["clock_synchronized"] = False
    config_data["sync"] = {"host": "127.0.0.1", "port": free_port(), "identity_file": str(short_dir / "id.key")}
    subprocess.run([sys.executable, "-m", "gate", "keygen", "--out", str(short_dir / "id.key")], check=True, capture_output=True)
    return config_data


@pytest.mark.parametrize("ledger", ["corrupt", "absent"])
def test_every_hint_of_a_lane_broken_everywhere_fits_80_columns(tmp_path: Path, config_data: dict[str, Any], short_dir: Path,
                                                                ledger: str) -> None:
    config = write_config(tmp_path / "gate.toml", failing_everywhere(config_data, short_dir, ledger))
    run = doctor(config, "--json")
    assert run.returncode == 1, run.stderr
    checks = json.loads(run.stdout)["checks"]
    failed = {c["name"]: c for c in checks if c["result"] == "fail"}
    expected = {"scanner", "nfc", "camera", "broker", "trust", "clock"} | ({"database", "bundle"} if ledger == "corrupt" else set())
    assert expected <= set(failed), [c["name"] for c in checks]
    for check in checks:
        assert check["fix"] or check["result"] != "fail", check
        assert len(check["fix"]) <= HINT_MAX, (len(check["fix"]), check)
    assert all(failed[name]["more"] for name in ("scanner", "nfc", "broker", "camera")), "the details are kept for --verbose"

    plain = doctor(config)
    verbose = doctor(config, "--verbose")
    assert failed["broker"]["more"] not in plain.stdout and failed["broker"]["more"] in verbose.stdout
    assert "gate doctor --verbose" in plain.stdout
    hints = [line.split("→ ", 1)[1] for line in plain.stdout.splitlines() if "→ " in line]
    assert len(hints) >= 7 and all(len(hint) <= HINT_MAX for hint in hints), hints


def test_a_ledger_owned_by_someone_else_gets_a_short_chown_hint(config_data: dict[str, Any], short_dir: Path) -> None:
    from gate import config as config_module
    from gate.store import Store

    config_data["gate"]["state_dir"] = str(short_dir / "state")
    Store(short_dir / "state" / "gate.db", "lane-1").close()  # root's, as after sudo gate bundle load
    doc = Doctor(config_module.parse(config_data, "gate.toml"))
    doc.service_user = "nobody"
    check = doc.check_database()
    assert check.result == "fail" and check.fix == f"sudo chown -R nobody:nobody {short_dir / 'state'}"
    assert len(check.fix) <= HINT_MAX and "not a corrupt database" in check.more


def test_a_config_that_does_not_load_gets_a_short_hint(tmp_path: Path) -> None:
    bad = tmp_path / ("a-rather-long-directory-name-as-technicians-make-them" * 2) / "gate.toml"
    bad.parent.mkdir()
    bad.write_text("[gate]\nid = 3\n")
    run = doctor(bad, "--json")
    (check,) = json.loads(run.stdout)["checks"]
    assert check["result"] == "fail" and len(check["fix"]) <= HINT_MAX and str(bad) in check["more"]


def _hint_texts(tree: ast.AST, constants: dict[str, str]) -> Iterator[tuple[int, str]]:
    """Every Check(...)'s hint in the source, with each {placeholder} counted as 12 characters."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Check"):
            continue
        hint = node.args[3] if len(node.args) > 3 else next((k.value for k in node.keywords if k.arg == "fix"), None)
        if isinstance(hint, ast.Constant) and isinstance(hint.value, str):
            yield node.lineno, hint.value
        elif isinstance(hint, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "x" * 12 for v in hint.values)
        elif isinstance(hint, ast.Name) and hint.id in constants:
            yield node.lineno, constants[hint.id]


def test_no_hint_in_the_source_runs_past_80_columns() -> None:
    """The branches the broken lane above does not reach (fire loop, a hung loop, a Pi's GPIO
    chip, a held keyboard, a full disk ...): each literal hint, read from the source."""
    seen = 0
    for source in SOURCES:
        tree = ast.parse(source.read_text())
        constants = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)
                     and isinstance(n.value.value, str)}
        constants |= {n.targets[0].id: max(n.value.body.value, n.value.orelse.value, key=len)  # a choice of two: the longer
                      for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
                      and isinstance(n.value, ast.IfExp) and isinstance(n.value.body, ast.Constant)
                      and isinstance(n.value.orelse, ast.Constant)}
        for line, hint in _hint_texts(tree, constants):
            seen += 1
            assert len(hint) <= HINT_MAX, f"{source.name}:{line}: {len(hint)} characters: {hint}"
    assert seen >= 25, "the hints were found"
