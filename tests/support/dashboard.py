"""What the dashboard tests share: a venue broker with the shipped ACL and a user per lane and
tool, the dashboard itself (its real config file, read by ``gate.dashboard.settings``; uvicorn in
a thread), a real headless Chromium driven by Selenium, and screenshots of what it shows."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import tomli_w
from hwsim.broker import Mosquitto, Watcher, free_port

from gate.dashboard import server, settings
from gate.dashboard.auth import hash_password
from gate.trust import signed
from tests.support.venue import ADMIN, KEYS, ROOT, VENUE, venue_acl

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("GATE_TEST_ARTEFACTS", REPO / "build" / "test-artefacts")) / "screenshots"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
USER, PASSWORD = "ops", "correct horse battery"
_HASH = hash_password(PASSWORD)  # once: scrypt costs ~50 ms


def chromium_paths() -> tuple[str, str] | None:
    """Debian's ``chromium`` and ``chromium-driver`` (scripts/test installs them)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def venue_broker(folder: Path, gates: list[str]) -> tuple[Mosquitto, dict[str, Path]]:
    """A mosquitto with the shipped ACL made for the venue and a password for every lane and for
    ``venue-monitor`` and ``venue-admin``; the password file of each (``<user>.pw``)."""
    folder.mkdir(parents=True, exist_ok=True)
    passwd = folder / "gate-passwd"
    files = {}
    for i, user in enumerate([*gates, "venue-monitor", "venue-admin"]):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, f"pw-{user}"], check=True)
        files[user] = folder / f"{user}.pw"
        files[user].write_text(f"pw-{user}\n")
        files[user].chmod(0o600)  # a secret: the dashboard warns about one its group or others may read
    return Mosquitto(folder / "broker", password_file=passwd, acl_file=venue_acl(folder)), files


def dashboard_config(folder: Path, broker: Mosquitto, passwords: dict[str, Path], *, admin_key: bool = True,
                     capacity: dict[str, int] | None = None, alarm_percent: float = 80, stale_after: float = 30) -> Path:
    """The dashboard's TOML as a venue writes it: the monitor user on the bus, the admin key for
    commands (or none), one user with a hashed password."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "dashboard": {"venue": VENUE, "listen": f"127.0.0.1:{free_port()}", "title": "Test venue", "audit_log": str(folder / "audit.log"),
                      "stale_after": stale_after, "push_interval": 0.05},
        "users": [{"name": USER, "password_hash": _HASH}],
        "bus": {"host": "127.0.0.1", "port": broker.port, "username": "venue-monitor",
                "password_file": str(passwords["venue-monitor"]), "topic_root": ROOT, "keepalive": 5},
        "trust": {"admin_key": KEYS.admin_public_hex},
        "occupancy": {"alarm_percent": alarm_percent, "capacity": capacity or {}},
    }
    if admin_key:
        key = folder / "admin.key"
        key.write_text(base64.b64encode(bytes(ADMIN)).decode() + "\n")
        key.chmod(0o600)
        data["commands"] = {"signing_key_file": str(key), "password_file": str(passwords["venue-admin"]), "wait": 5.0}
    path = folder / "dashboard.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def publish_zoned_roster(broker: Mosquitto, zones: dict[str, str | None], admin_password: Path, version: int = 1) -> None:
    """The admin's signed bundle whose roster puts each gate in its zone, published retained as
    ``venue-admin`` (``gate bundle publish`` does the same)."""
    import time

    roster = [signed.roster_entry(gate, bytes(KEYS.add(gate).verify_key), zone=zone) for gate, zone in sorted(zones.items())]
    data = signed.sign(signed.bundle_payload(VENUE, version, time.time(), [], b"", roster), ADMIN)
    watcher = Watcher(broker.port, [], username="venue-admin", password=admin_password.read_text().strip())
    try:
        watcher.publish(f"{ROOT}bundle", data, retain=True)
    finally:
        watcher.close()


class RunningDashboard:
    """``gate venue-dashboard run`` in a thread of the test process (uvicorn on a free port)."""

    def __init__(self, config_path: Path) -> None:
        self.config = settings.load(config_path)
        self.dashboard = server.build(self.config)
        self.server = server.uvicorn_server(self.dashboard)
        self.dashboard.bus.start()
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.thread.start()
        deadline = 100
        while not self.server.started and self.thread.is_alive() and deadline:
            self.thread.join(0.05)
            deadline -= 1
        assert self.server.started, "the dashboard did not start"
        # and its bus is subscribed: what a test publishes next reaches it (the page's HTTP server
        # may be up before paho has connected; a record published before then passes it by)
        assert self.dashboard.bus.subscribed.wait(30), "the dashboard did not subscribe to the bus"
        self.url = f"http://127.0.0.1:{self.config.port}"

    @property
    def audit(self) -> Path:
        return self.config.audit_log

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.dashboard.bus.stop()


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    assert paths is not None
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1000",
                "--disable-extensions", "--no-first-run", "--password-store=basic"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(paths[1]))


def log_in(driver: Any, url: str, user: str = USER, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/login")
    driver.find_element(By.ID, "name").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 10).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))


def screenshot(driver: Any, name: str) -> Path:
    """A test artefact (build/test-artefacts/screenshots, or $GATE_TEST_ARTEFACTS); with
    GATE_SCREENSHOTS=docs also the copy committed in docs/screenshots."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("GATE_SCREENSHOTS") == "docs":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SCREENSHOTS / path.name)
    return path
