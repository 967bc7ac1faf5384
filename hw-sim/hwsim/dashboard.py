"""The venue dashboard beside the simulated venue (``scripts/demo --venue``): a real
``gate venue-dashboard run`` process reading the demo's broker as venue-monitor, holding the
demo's admin key (so its commands work), with a demo login printed on the terminal."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hwsim.broker import free_port
from hwsim.venue_keys import VenueKeys

USER, PASSWORD = "demo", "demo-venue"  # a demo's login, printed for whoever runs it


class DemoDashboard:
    def __init__(self, workdir: Path, broker_port: int, keys: VenueKeys, root: str) -> None:
        from gate.dashboard.auth import hash_password

        home = workdir / "dashboard"
        home.mkdir(parents=True, exist_ok=True)
        key = home / "admin.key"
        key.write_text(base64.b64encode(bytes(keys.admin)).decode() + "\n")
        key.chmod(0o600)
        self.port = free_port()
        config = home / "dashboard.toml"
        config.write_text("\n".join([
            "[dashboard]", f'venue = "{keys.venue}"', f'listen = "127.0.0.1:{self.port}"', 'title = "Demo venue"',
            f"audit_log = {json.dumps(str(home / 'audit.log'))}", "",
            "[[users]]", f'name = "{USER}"', f'password_hash = "{hash_password(PASSWORD)}"', "",
            "[bus]", 'host = "127.0.0.1"', f"port = {broker_port}", 'username = "venue-monitor"', f'topic_root = "{root}"', "",
            "[trust]", f'admin_key = "{keys.admin_public_hex}"', "",
            "[commands]", f"signing_key_file = {json.dumps(str(key))}", "",
        ]) + "\n")
        self.log = open(home / "dashboard.log", "w")  # noqa: SIM115 (open while the process runs, as hwsim.venue.Gate's)
        self.process = subprocess.Popen([sys.executable, "-m", "gate", "venue-dashboard", "run", "--config", str(config)],
                                        stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.url + "login", timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start (see {home / 'dashboard.log'})") from None
                time.sleep(0.05)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(15)
        finally:
            self.log.close()
