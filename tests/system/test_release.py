"""A fleet's release: ``scripts/release`` builds a wheelhouse (here for this machine's platform;
a real release is for aarch64), ``scripts/install-pi.sh --from`` installs it into a throwaway root
with the network off, into its own versioned directory behind /opt/gate/current, ``--rollback``
returns to the release before, and the version shows on ``gate --version``, the status socket,
the status topic (a real mosquitto) and the start-up log line. Also the permissions the installer
sets: secrets the gate user's alone, technicians in gate-status, readers' device nodes 0600."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hwsim.broker import Mosquitto, Watcher, mosquitto_binary

from gate.field.status_server import StatusServer, read_status
from gate.store.db import SCHEMA_VERSION, Database
from tests.support.lanes import wait_until

REPO = Path(__file__).resolve().parents[2]
RELEASE = REPO / "scripts" / "release"
ANALYZE = shutil.which("systemd-analyze")
UNSHARE = shutil.which("unshare")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-sysusers") is None,
                                reason="the throwaway-root install sets owners and creates users: run as root with systemd")


def offline(*command: str) -> list[str]:
    """The command with no network at all (a new network namespace: loopback only, and down)."""
    if UNSHARE is not None and subprocess.run([UNSHARE, "--net", "true"], capture_output=True, check=False).returncode == 0:
        return [UNSHARE, "--net", *command]
    return list(command)  # (a container that may not make namespaces: pip --no-index alone)


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two releases: the first from PyPI (pip's cache), the second built offline from the first's wheels."""
    out = tmp_path_factory.mktemp("releases")
    first = Path(run([str(RELEASE), "--host", "--out", str(out), "--version", "0.1.0+rel1"]).stdout.strip())
    second = Path(run(offline(str(RELEASE), "--host", "--out", str(out), "--version", "0.1.0+rel2",
                              "--find-links", str(first), "--no-index")).stdout.strip())
    return first, second


@pytest.fixture(scope="module")
def third(releases: tuple[Path, Path]) -> Path:
    """A third release, built offline from the first's wheels."""
    first, _ = releases
    return Path(run(offline(str(RELEASE), "--host", "--out", str(first.parent), "--version", "0.1.0+rel3",
                            "--find-links", str(first), "--no-index")).stdout.strip())


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory, releases: tuple[Path, Path]) -> tuple[Path, str]:
    """An empty root (no /etc at all), with a technician an older installer put in group gate,
    and release 1 installed from its tarball with the network off."""
    root = tmp_path_factory.mktemp("pi")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ntech:x:1000:1000::/home/tech:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\ntech:x:1000:\ngate:x:990:tech\nplugdev:x:46:tech\n")
    (root / "etc" / "hostname").write_text("lane-9\n")
    first, _ = releases
    out = run(offline("bash", str(first / "scripts" / "install-pi.sh"), "--root", str(root),
                      "--from", f"{first}.tar.gz", "--technician", "tech")).stdout
    return root, out


def gate_version(root: Path) -> str:
    return run([str(root / "opt/gate/current/venv/bin/gate"), "--version"]).stdout.strip()


def installer(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(offline("bash", str(REPO / "scripts" / "install-pi.sh"), "--root", str(root), *args),
                          capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_wheelhouse_is_locked_by_hash_and_holds_no_simulator(releases: tuple[Path, Path]) -> None:
    first, _ = releases
    lock = (first / "requirements.lock").read_text().splitlines()
    pins = [line for line in lock if not line.startswith("#")]
    wheels = sorted(first.glob("*.whl"))
    assert len(pins) == len(wheels) > 20
    assert all(re.fullmatch(r"[a-z0-9-]+==\S+ --hash=sha256:[0-9a-f]{64}", pin) for pin in pins), pins
    assert "gate==0.1.0+rel1" in " ".join(pins) and not any("hwsim" in pin or "pytest" in pin for pin in pins)
    assert (first / "VERSION").read_text().strip() == "0.1.0+rel1"
    with tarfile.open(f"{first}.tar.gz") as tar:
        names = tar.getnames()
    assert f"{first.name}/requirements.lock" in names and f"{first.name}/scripts/install-pi.sh" in names


def test_a_release_installs_offline_into_its_own_directory(pi: tuple[Path, str]) -> None:
    root, out = pi
    assert "from the wheelhouse, no network" in out
    assert "ok       sha256 of gate-0.1.0+rel1-" in out, "the tarball checked against the .sha256 beside it"
    assert (root / "opt/gate/current/.gate-schema").read_text().strip() == str(SCHEMA_VERSION)
    assert os.readlink(root / "opt/gate/current") == "releases/0.1.0+rel1"
    assert gate_version(root) == "gate 0.1.0+rel1"
    assert os.readlink(root / "usr/local/bin/gate") == "/opt/gate/current/venv/bin/gate"
    assert os.readlink(root / "opt/gate/venv") == "current/venv", "gate-bridge's unit names /opt/gate/venv"
    unit = (root / "etc/systemd/system/gate.service").read_text()
    assert "ExecStart=/opt/gate/current/venv/bin/gate run" in unit
    # The skeleton config waits for the issuer's key: a unit enabled with it would stop at every boot.
    assert "skip     enabling gate.service" in out
    assert not os.path.lexists(root / "etc/systemd/system/multi-user.target.wants/gate.service")


def test_technicians_get_the_status_socket_and_nothing_else(pi: tuple[Path, str]) -> None:
    root, _ = pi
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in (root / "etc/group").read_text().splitlines()}
    assert "tech" in groups["gate-status"] and "gate" in groups["gate-status"], "the lane gives its socket to the group"
    assert "tech" not in groups["gate"], "an older installer's membership is taken back: gate reads the secrets"
    assert "tech" in groups["plugdev"], "the technician's other groups stay"
    gate_uid = int(re.search(r"^gate:x:(\d+):", (root / "etc/passwd").read_text(), re.MULTILINE).group(1))
    key = (root / "etc/gate/identity.key").stat()
    assert (key.st_uid, key.st_mode & 0o777) == (gate_uid, 0o600)
    rules = (root / "etc/udev/rules.d/99-gate.rules").read_text()
    readers = [line for line in rules.splitlines() if line and not line.startswith("#")]
    assert len(readers) >= 15 and all('OWNER="gate"' in line and 'MODE="0600"' in line for line in readers), readers
    assert "dialout" not in "".join(readers) and "0660" not in rules


def test_the_status_socket_belongs_to_the_status_group(tmp_path: Path) -> None:
    import grp

    group = next(name for name in ("nogroup", "daemon", "root") if name in {g.gr_name for g in grp.getgrall()})

    server = StatusServer(str(tmp_path / "status.sock"), lambda: {"gate": "x"}, group=group)
    try:
        info = (tmp_path / "status.sock").stat()
        assert info.st_mode & 0o777 == 0o660 and info.st_gid == grp.getgrnam(group).gr_gid
    finally:
        server.close()


def valid_config(root: Path, broker: Mosquitto | None = None) -> None:
    """The lane's config made valid: the issuer's key, and the venue bus on a broker."""
    config = root / "etc/gate/gate.toml"
    text = config.read_text().replace("REPLACE-with-the-public_key-printed-by-gate-keygen",
                                      base64.b64encode(os.urandom(32)).decode())
    port = broker.port if broker is not None else 1883
    text += f'\n[sync]\nbrokers = ["192.0.2.7:{port}", "127.0.0.1:{port}"]\nidentity_file = "identity.key"\npassword_file = "broker.pw"\n'
    config.write_text(text)
    (root / "etc/gate/broker.pw").write_text("secret\n")
    (root / "etc/gate/broker.pw").chmod(0o640)
    (root / "etc/gate/trust").mkdir(exist_ok=True)
    (root / "etc/gate/trust/pretix.json").write_text("{}")


def test_an_update_then_rollback_in_one_command(pi: tuple[Path, str], releases: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = pi
    root = tmp_path / "pi"
    shutil.copytree(source, root, symlinks=True)
    valid_config(root)
    _, second = releases
    out = installer(root, "--from", str(second)).stdout
    assert gate_version(root) == "gate 0.1.0+rel2"
    assert os.readlink(root / "opt/gate/previous") == "releases/0.1.0+rel1"
    assert "do       enable gate.service" in out, "a config that passes check-config: enabled"
    unit = (root / "etc/systemd/system/gate.service").read_text()
    assert "IPAddressDeny=any" in unit and "IPAddressAllow=localhost\n" in unit
    assert re.search(r"^IPAddressAllow=192\.0\.2\.7$", unit, re.MULTILINE), "the configured broker, filled in by the installer"
    for secret in ("broker.pw", "identity.key", "trust/pretix.json"):
        assert (root / "etc/gate" / secret).stat().st_mode & 0o777 == 0o600, secret
    assert (root / "etc/gate/trust").stat().st_mode & 0o777 == 0o700
    assert (root / "etc/gate/gate.toml").stat().st_mode & 0o777 == 0o640

    out = installer(root, "--rollback").stdout
    assert gate_version(root) == "gate 0.1.0+rel1" and "gate     gate 0.1.0+rel1" in out
    assert os.readlink(root / "opt/gate/previous") == "releases/0.1.0+rel2"
    installer(root, "--rollback")
    assert gate_version(root) == "gate 0.1.0+rel2", "a second rollback undoes the first"
    again = installer(root, "--from", str(second)).stdout
    assert "do  " not in again, again

    if ANALYZE is not None:
        unit_file = tmp_path / "gate.service"
        unit_file.write_text(unit.replace("/opt/gate/current/venv/bin/gate", str(root / "opt/gate/current/venv/bin/gate")))
        check = subprocess.run([ANALYZE, "verify", "--man=no", str(unit_file)], capture_output=True, text=True, check=False)
        noise = [line for line in (check.stdout + check.stderr).splitlines() if "riscv_hwprobe" not in line and "uretprobe" not in line]
        assert check.returncode == 0 and not noise, check.stdout + check.stderr


def test_options_that_would_lose_data_or_mislead(pi: tuple[Path, str], tmp_path: Path) -> None:
    help_text = run(["bash", str(REPO / "scripts/install-pi.sh"), "--help"]).stdout
    assert "--rollback" in help_text and "--from WHEELHOUSE" in help_text and "set -euo" not in help_text
    purge = installer(tmp_path, "--purge", check=False)
    assert purge.returncode == 1 and "--purge goes with --uninstall" in purge.stderr
    assert "no previous release" in installer(tmp_path, "--rollback", check=False).stderr

    source, _ = pi
    root = tmp_path / "pi"
    shutil.copytree(source, root, symlinks=True)
    (root / "var/lib/gate").mkdir(parents=True)
    (root / "var/lib/gate/gate.db").write_bytes(b"the ledger")
    out = installer(root, "--uninstall", "--purge").stdout
    assert not (root / "var/lib/gate").exists() and "back up" in out
    (backup,) = (root / "var/backups/gate").glob("gate-*.tar.gz")
    assert backup.stat().st_mode & 0o777 == 0o600
    with tarfile.open(backup) as tar:
        assert tar.extractfile("var/lib/gate/gate.db").read() == b"the ledger"
    assert "gate-status:" not in (root / "etc/group").read_text()


def answer(socket_path: Path) -> dict[str, Any]:
    """The lane's status, {} while none answers yet (the socket is bound before it listens)."""
    try:
        return read_status(str(socket_path))
    except OSError:
        return {}


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (scripts/test installs it)")
def test_the_version_shows_on_status_the_status_topic_and_the_log(pi: tuple[Path, str], releases: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """The installed release runs a lane (with mock pins: the simulator's wheel is added for this
    test alone; a Pi never has it) on a real mosquitto."""
    root, _ = pi
    venv = root / "opt/gate/current/venv"
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO / "hw-sim")])
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))])
    broker = Mosquitto(tmp_path / "broker")
    subprocess.run([str(venv / "bin/gate"), "keygen", "--out", str(tmp_path / "identity.key")], check=True, capture_output=True)
    config: dict[str, Any] = {
        "gate": {"id": "lane-9", "venue": "arena", "state_dir": str(tmp_path / "state")},
        "gpio": {"pin_factory": "mock", "unlock_in": {"pin": 17}, "green": {"pin": 27}, "red": {"pin": 22},
                 "passage_in": {"pin": 5}, "fire_alarm": {"pin": 13}},
        "trust": {"gt1_issuers": [{"name": "x", "public_key": base64.b64encode(os.urandom(32)).decode()}]},
        "status": {"socket": str(tmp_path / "status.sock")},
        "sync": broker.sync_table(identity_file=str(tmp_path / "identity.key"), status_interval=1.0),
    }
    (tmp_path / "gate.toml").write_text(tomli_w.dumps(config))
    watcher = Watcher(broker.port, ["gate/v2/arena/gates/lane-9/status"])
    log = (tmp_path / "lane.log").open("w")
    lane = subprocess.Popen([str(venv / "bin/gate"), "run", "--config", str(tmp_path / "gate.toml")], stdout=log, stderr=log)
    try:
        status: list[dict[str, Any]] = []
        wait_until(lambda: lane.poll() is not None or bool(status.append(answer(tmp_path / "status.sock")) or status[-1]), 30)
        assert lane.poll() is None, (tmp_path / "lane.log").read_text()
        assert status[-1]["version"] == "0.1.0+rel1"
        topic = "gate/v2/arena/gates/lane-9/status"
        wait_until(lambda: watcher.last_json(topic).get("state") == "online", 30)
        assert watcher.last_json(topic)["version"] == "0.1.0+rel1"
        assert re.search(r"lane ready gate=lane-9 .*version=0\.1\.0\+rel1", (tmp_path / "lane.log").read_text())
    finally:
        lane.terminate()
        lane.wait(30)
        log.close()
        watcher.close()
        broker.stop()


def copy_of(pi: tuple[Path, str], root: Path) -> Path:
    shutil.copytree(pi[0], root, symlinks=True)
    return root


def links(root: Path) -> dict[str, str]:
    return {name: os.readlink(root / "opt/gate" / name) for name in ("current", "previous") if os.path.lexists(root / "opt/gate" / name)}


def set_schema(ledger: Path, version: int) -> None:
    db = sqlite3.connect(ledger)
    try:
        db.execute(f"PRAGMA user_version = {version}")
    finally:
        db.close()


def test_a_rollback_never_starts_a_release_older_than_the_ledger(pi: tuple[Path, str], releases: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    root = copy_of(pi, tmp_path / "pi")
    ledger = root / "var/lib/gate/gate.db"
    Database(ledger).close()  # a real ledger, as an older release left it (one schema behind)
    set_schema(ledger, SCHEMA_VERSION - 1)
    _, second = releases
    out = installer(root, "--from", f"{second}.tar.gz").stdout
    assert "ok       sha256 of gate-0.1.0+rel2-" in out
    # The update will migrate the ledger at its first start: a copy of it comes first.
    (copy,) = (root / "var/backups/gate").glob(f"gate-schema{SCHEMA_VERSION - 1}-before-0.1.0+rel2-*.db")
    assert f"copy the ledger (schema {SCHEMA_VERSION - 1})" in out and copy.stat().st_mode & 0o777 == 0o600
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
    db.close()

    # The new release migrated the ledger to a schema the previous release cannot read: that
    # release would stop at start (the lane down), so the rollback is refused and changes nothing.
    set_schema(ledger, SCHEMA_VERSION + 1)
    previous_python = root / "opt/gate/releases/0.1.0+rel1/venv/bin/python"
    start = subprocess.run([str(previous_python), "-c", f"from gate.store.db import Database; Database({str(ledger)!r})"],
                           capture_output=True, text=True, check=False)
    assert start.returncode != 0 and "newer than this gate" in start.stderr, "the premise: rel1 refuses this ledger"
    before = links(root)
    refused = installer(root, "--rollback", check=False)
    assert refused.returncode != 0, refused.stdout
    assert f"has schema {SCHEMA_VERSION + 1}, gate 0.1.0+rel1 reads schema {SCHEMA_VERSION} at most" in refused.stderr
    assert "Install a release forward" in refused.stderr and "/var/backups/gate/" in refused.stderr
    assert links(root) == before == {"current": "releases/0.1.0+rel2", "previous": "releases/0.1.0+rel1"}

    set_schema(ledger, SCHEMA_VERSION)  # a ledger both releases read: the rollback goes through
    installer(root, "--rollback")
    assert gate_version(root) == "gate 0.1.0+rel1"


def test_an_update_keeps_the_running_and_the_rollback_release(pi: tuple[Path, str], releases: tuple[Path, Path],
                                                              third: Path, tmp_path: Path) -> None:
    root = copy_of(pi, tmp_path / "pi")
    # The lane was started on release 1 (start_lane records it); two updates follow with no restart.
    os.symlink("releases/0.1.0+rel1", root / "opt/gate/running")
    _, second = releases
    installer(root, "--from", str(second), "--no-start")
    out = installer(root, "--from", str(third), "--no-start").stdout
    assert links(root) == {"current": "releases/0.1.0+rel3", "previous": "releases/0.1.0+rel2"}
    assert (root / "opt/gate/releases/0.1.0+rel1/venv/bin/gate").exists(), "the running lane's files stay: " + out
    assert "kept     /opt/gate/releases/0.1.0+rel1 (the lane still runs it" in out

    # Another build that calls itself 0.1.0+rel2 (a wheel's hash changed, so pip refuses it):
    # the rollback target is never rebuilt in place, so it cannot be lost to a failed install.
    other = tmp_path / second.name
    shutil.copytree(second, other)
    lock = other / "requirements.lock"
    lock.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, lock.read_text(), count=1))
    refused = installer(root, "--from", str(other), check=False)
    assert refused.returncode != 0 and "give this build its own version" in refused.stderr, refused.stdout
    assert (root / "opt/gate/releases/0.1.0+rel2/.gate-installed").exists()
    # Under a version of its own, the failed install leaves nothing behind and switches nothing.
    (other / "VERSION").write_text("0.1.0+rel9\n")
    failed = installer(root, "--from", str(other), check=False)
    assert failed.returncode != 0 and "failed   pip: nothing was switched" in failed.stdout, failed.stdout + failed.stderr
    assert not (root / "opt/gate/releases/0.1.0+rel9").exists()
    installer(root, "--rollback")
    assert gate_version(root) == "gate 0.1.0+rel2"


def test_a_tarball_that_does_not_match_its_checksum_is_refused(releases: tuple[Path, Path], tmp_path: Path) -> None:
    first, _ = releases
    tarball = tmp_path / f"{first.name}.tar.gz"
    shutil.copy(f"{first}.tar.gz.sha256", f"{tarball}.sha256")
    tarball.write_bytes(Path(f"{first}.tar.gz").read_bytes()[:-100])  # a copy cut short
    root = tmp_path / "pi"
    root.mkdir()
    refused = installer(root, "--from", str(tarball), check=False)
    assert refused.returncode != 0 and f"{tarball.name} does not match {tarball.name}.sha256" in refused.stderr
    assert not (root / "opt/gate").exists()


def test_paths_with_a_quote_in_them(pi: tuple[Path, str], releases: tuple[Path, Path], tmp_path: Path) -> None:
    root = copy_of(pi, tmp_path / "the lane's root")
    (root / "etc/gate/broker.pw").write_text("secret\n")
    (root / "etc/gate/broker.pw").chmod(0o640)
    first, _ = releases
    installer(root, "--from", str(first))
    gate_uid = int(re.search(r"^gate:x:(\d+):", (root / "etc/passwd").read_text(), re.MULTILINE).group(1))
    info = (root / "etc/gate/broker.pw").stat()
    assert (info.st_uid, info.st_mode & 0o777) == (gate_uid, 0o600)
    (root / "var/lib/gate").mkdir(parents=True)
    (root / "var/lib/gate/gate.db").write_bytes(b"the ledger")
    installer(root, "--uninstall", "--purge")
    (backup,) = (root / "var/backups/gate").glob("gate-*.tar.gz")
    with tarfile.open(backup) as tar:
        assert tar.extractfile("var/lib/gate/gate.db").read() == b"the ledger"
