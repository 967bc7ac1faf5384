"""Field deployment: the systemd unit as systemd reads it, and scripts/install-pi.sh in dry run
and into a throwaway root directory (install, run again, uninstall, purge)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install-pi.sh"
UNIT = REPO / "systemd" / "gate.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (scripts/test installs systemd)")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-sysusers") is None,
                                reason="the throwaway-root install sets owners and creates users: run as root with systemd")


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def verify(unit_text: str, gate_binary: Path, tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say (an unknown key is only a warning to it,
    so any output at all fails) and the hardening keeps its exposure score."""
    unit = tmp_path / "gate.service"
    unit.write_text(unit_text.replace("/opt/gate/current/venv/bin/gate", str(gate_binary)))
    run = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    noise = [line for line in (run.stdout + run.stderr).splitlines() if "riscv_hwprobe" not in line and "uretprobe" not in line]
    assert run.returncode == 0 and not noise, run.stdout + run.stderr
    security = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, check=False)
    score = re.search(r"Overall exposure level for gate.service: ([0-9.]+)", security.stdout + security.stderr)
    assert score and float(score.group(1)) <= 3.0, security.stdout[-2000:]


def test_the_unit_neither_loops_on_a_bad_config_nor_waits_for_the_network() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["RestartPreventExitStatus"] == ["2"], "a config error (exit 2) is not restarted every second"
    assert "network-online.target" not in " ".join(settings.get("After", []) + settings.get("Wants", [])), \
        "an offline-first lane does not wait for the DHCP timeout"
    assert settings["MemoryMax"] and settings["ProtectProc"] == ["invisible"] and settings["ProcSubset"] == ["pid"]


@needs_analyze
def test_the_bridge_unit_verifies_and_keeps_its_queue_to_itself(tmp_path: Path) -> None:
    text = (REPO / "systemd" / "gate-bridge.service").read_text()
    unit = tmp_path / "gate-bridge.service"
    unit.write_text(text.replace("/opt/gate/venv/bin/gate", sys.executable))
    run = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr
    settings = unit_settings(text)
    assert settings["UMask"] == ["0077"] and settings["User"] == ["gate-bridge"] and settings["RestartPreventExitStatus"] == ["2"]


def test_the_unit_runs_the_lane_as_a_watched_unprivileged_service() -> None:
    settings = unit_settings(UNIT.read_text())
    expected = {
        "Type": ["notify"], "Restart": ["always"], "StartLimitIntervalSec": ["0"], "User": ["gate"],
        "ProtectSystem": ["strict"], "NoNewPrivileges": ["yes"], "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""], "DevicePolicy": ["closed"], "StateDirectory": ["gate"],
        "RuntimeDirectory": ["gate"], "ConfigurationDirectory": ["gate"], "WorkingDirectory": ["/var/lib/gate"],
    }
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert int(settings["WatchdogSec"][0]) >= 5
    assert settings["ExecStopPost"] == ["-/opt/gate/current/venv/bin/gate safe --config /etc/gate/gate.toml"]
    assert "char-gpiochip rw" in settings["DeviceAllow"] and "char-ttyACM rw" in settings["DeviceAllow"]
    assert "adjtimex" in settings["SystemCallFilter"][0], "the clock guard reads adjtimex"
    assert "ProtectClock" not in settings, "ProtectClock would forbid the clock guard's question"


@needs_analyze
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    verify(UNIT.read_text(), Path(sys.executable).with_name("gate"), tmp_path)


def installer(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


def files_under(root: Path) -> dict[str, tuple[int, bytes | str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if ".gate-" in path.name or "/venv/" in str(path):
            continue
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (path.lstat().st_mode, content)
    return found


def test_options_are_checked(tmp_path: Path) -> None:
    run = installer("--scanner", "honeywell", "--dry-run", "--root", str(tmp_path), check=False)
    assert run.returncode == 1 and "VID:PID" in run.stderr
    run = installer("--frobnicate", check=False)
    assert run.returncode == 1 and "unknown option --frobnicate" in run.stderr


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("lane-7\n")
    before = files_under(tmp_path)
    out = installer("--dry-run", "--root", str(tmp_path)).stdout
    assert files_under(tmp_path) == before
    for step in ("create user gate", "write /etc/systemd/system/gate.service", "write /etc/udev/rules.d/99-gate.rules",
                 "write /etc/gate/gate.toml", "enable gate.service once", "install gate", "switch /opt/gate/current"):
        assert f"would    {step}" in out, step
    assert "do  " not in out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pi")
    (root / "etc").mkdir()
    shutil.copy("/etc/os-release", root / "etc" / "os-release")
    (root / "etc" / "hostname").write_text("lane-7\n")
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text(BOOT_CONFIG)
    return root, installer("--root", str(root), "--scanner", "0C2E:0B61").stdout


# Raspberry Pi OS's config.txt ends inside a model's section: lines appended there would apply
# to that model only.
BOOT_CONFIG = "dtparam=audio=on\ncamera_auto_detect=1\n\n[cm5]\ndtoverlay=dwc2,dr_mode=host\n"


def boot_block(text: str) -> list[str]:
    lines = text.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith("# >>> gate"))
    end = lines.index("# <<< gate")
    return lines[begin + 1:end]


@needs_root
def test_the_outputs_safe_levels_go_into_config_txt(installed: tuple[Path, str]) -> None:
    root, out = installed
    text = (root / "boot/firmware/config.txt").read_text()
    assert text.startswith(BOOT_CONFIG), "the firmware's own settings are kept"
    # The example config: relays and LEDs active-high; released relay low, red on, contacts pulled up.
    assert boot_block(text) == ["[all]", "gpio=5=ip,pu", "gpio=13=ip,pu", "gpio=17=op,dl", "gpio=22=op,dh",
                                "gpio=24=op,dl", "gpio=27=op,dl"]
    assert "write the outputs' safe levels into /boot/firmware/config.txt" in out


@needs_root
def test_a_changed_gpio_table_updates_the_block_in_place_and_uninstall_removes_it(installed: tuple[Path, str], tmp_path: Path) -> None:
    source, _ = installed
    root = tmp_path / "pi"
    shutil.copytree(source, root, symlinks=True)
    txt = root / "boot/firmware/config.txt"
    txt.write_text(txt.read_text() + "# the technician's own line, after the block\n")
    config = root / "etc/gate/gate.toml"
    config.write_text(config.read_text().replace("pin = 17\nactive_high = true", "pin = 17\nactive_high = false"))
    out = installer("--root", str(root)).stdout
    assert "write the outputs' safe levels" in out
    text = txt.read_text()
    assert "gpio=17=op,dh" in boot_block(text) and text.count("# >>> gate") == 1
    assert text.endswith("# <<< gate\n# the technician's own line, after the block\n"), "updated where it was"
    installer("--root", str(root), "--uninstall")
    assert txt.read_text() == BOOT_CONFIG + "# the technician's own line, after the block\n"


@needs_root
def test_install_into_a_throwaway_root(installed: tuple[Path, str]) -> None:
    root, out = installed
    assert "do       create user gate" in out
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^gate:x:\d+:\d+:gate turnstile lane:/var/lib/gate:/usr/sbin/nologin$", passwd, re.MULTILINE)
    groups = (root / "etc/group").read_text()
    for group in ("gpio", "dialout", "video"):
        assert re.search(rf"^{group}:x:\d+:gate$", groups, re.MULTILINE), group
    gate_gid = int(re.search(r"^gate:x:(\d+):", groups, re.MULTILINE).group(1))

    config = root / "etc/gate/gate.toml"
    assert config.stat().st_mode & 0o777 == 0o640 and config.stat().st_gid == gate_gid and config.stat().st_uid == 0
    assert (root / "etc/gate").stat().st_mode & 0o777 == 0o750
    assert 'id = "lane-7"' in config.read_text()
    rules = (root / "etc/udev/rules.d/99-gate.rules").read_text()
    assert 'ATTRS{idVendor}=="0c2e", ATTRS{idProduct}=="0b61", SYMLINK+="gate-scanner", OWNER="gate", GROUP="gate", MODE="0600"' in rules
    assert "blacklist pn533_usb" in (root / "etc/modprobe.d/gate-nfc.conf").read_text()
    # The skeleton config waits for the issuer's key: enabled, the lane would stop at every boot.
    assert not os.path.lexists(root / "etc/systemd/system/multi-user.target.wants/gate.service")
    assert "skip     enabling gate.service" in out
    assert os.readlink(root / "usr/local/bin/gate") == "/opt/gate/current/venv/bin/gate"

    gate = root / "opt/gate/current/venv/bin/gate"
    version = subprocess.run([str(gate), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    assert re.fullmatch(r"gate 0\.1\.0\+g[0-9a-f]{7}(\.dirty\.[0-9a-f]{8})?", version), "the checkout's commit"
    assert os.readlink(root / "opt/gate/current") == f"releases/{version.split()[1]}"
    assert "include-system-site-packages = true" in (root / "opt/gate/current/venv/pyvenv.cfg").read_text(), "picamera2 comes from Debian"
    check = subprocess.run([str(gate), "check-config", "--config", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 2 and "trust.gt1_issuers[0]" in check.stderr, "the skeleton asks for the issuer's key"

    identity = root / "etc/gate/identity.key"  # the lane's record-signing key: the gate user's alone
    gate_uid = int(re.search(r"^gate:x:(\d+):", passwd, re.MULTILINE).group(1))
    assert identity.stat().st_mode & 0o777 == 0o600 and (identity.stat().st_uid, identity.stat().st_gid) == (gate_uid, gate_gid)
    assert len(base64.b64decode(identity.read_text().strip(), validate=True)) == 32


@needs_root
@needs_analyze
def test_the_installed_unit_verifies(installed: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = installed
    verify((root / "etc/systemd/system/gate.service").read_text(), root / "opt/gate/current/venv/bin/gate", tmp_path)


@needs_root
def test_a_second_run_changes_nothing_and_keeps_the_config(installed: tuple[Path, str]) -> None:
    root, _ = installed
    config = root / "etc/gate/gate.toml"
    config.write_text(config.read_text() + "\n# the technician's edit\n")
    before = files_under(root)
    out = installer("--root", str(root)).stdout
    assert "do  " not in out, out
    assert "ok       /etc/gate/gate.toml (kept" in out and "ok       /etc/gate/identity.key (kept" in out
    assert files_under(root) == before, "nothing rewritten; the scanner added earlier is kept"


@needs_root
def test_uninstall_keeps_the_ledger_then_purge_removes_all(installed: tuple[Path, str], tmp_path: Path) -> None:
    source, _ = installed
    root = tmp_path / "pi"
    shutil.copytree(source, root, symlinks=True)
    (root / "var/lib/gate").mkdir(parents=True)
    (root / "var/lib/gate/gate.db").write_bytes(b"the ledger")
    out = installer("--root", str(root), "--uninstall").stdout
    assert "kept     /etc/gate" in out
    for gone in ("etc/systemd/system/gate.service", "etc/udev/rules.d/99-gate.rules", "opt/gate", "usr/local/bin/gate",
                 "etc/systemd/system/multi-user.target.wants/gate.service"):
        assert not os.path.lexists(root / gone), gone
    assert (root / "var/lib/gate/gate.db").read_bytes() == b"the ledger" and (root / "etc/gate/gate.toml").exists()
    installer("--root", str(root), "--uninstall", "--purge")
    assert not (root / "var/lib/gate").exists() and not (root / "etc/gate").exists()
    assert "gate:" not in (root / "etc/passwd").read_text() and not re.search(r"^gate:", (root / "etc/group").read_text(), re.MULTILINE)


def test_a_checkout_whose_version_is_a_path_is_refused(tmp_path: Path) -> None:
    """A version names the release's directory (/opt/gate/releases/VERSION): one with a slash or
    .. in it (here from gate/version.py of a checkout without git) would put it anywhere."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            (checkout / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name.decode())
    version = checkout / "gate" / "version.py"
    version.write_text(version.read_text().replace('__version__ = "', '__version__ = "0.1.0/../../../../tmp/x'))
    root = tmp_path / "pi"
    root.mkdir()
    run = subprocess.run(["bash", str(checkout / "scripts" / "install-pi.sh"), "--dry-run", "--root", str(root)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 1 and "not a version: 0.1.0/../../../../tmp/x" in run.stderr, run.stdout + run.stderr
    assert "install gate" not in run.stdout
