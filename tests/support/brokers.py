"""The shipped broker set-up (config/mosquitto/) run for real, as docs/mqtt.md installs it:
the venue CA and the certificates made by the recipe in docs/mqtt.md (its own shell blocks),
mosquitto.conf in a conf.d beside a main config like Debian's, the ACL made for the venue,
bridge.conf on a stand's broker. Only paths, ports and secrets are replaced, and every
replacement must find its text, so a change to the shipped files shows here."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hwsim.broker import Mosquitto, free_port

from tests.support.venue import VENUE, venue_acl

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "mosquitto"
MQTT_DOC = REPO / "docs" / "mqtt.md"
BRIDGE_USER = "bridge-north-stand"  # as the shipped bridge.conf and acl name it


def recipe(step: str) -> str:
    """The ```sh block of docs/mqtt.md that begins with the comment ``# {step}`` (e.g. "1.")."""
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", MQTT_DOC.read_text(), re.S) if b.startswith(f"# {step} ")]
    assert len(blocks) == 1, f"docs/mqtt.md has {len(blocks)} blocks for step {step}"
    return blocks[0]


def _replace(text: str, old: str, new: str, count: int | None = None) -> str:
    found = text.count(old)
    assert found and (count is None or found == count), f"{old!r} found {found} times"
    return text.replace(old, new)


def run_recipe(step: str, folder: Path, **variables: str) -> str:
    """Run a step of the recipe in ``folder`` as a technician pastes it into bash, its
    ``NAME=value`` lines set to ``variables``; what it printed."""
    text = recipe(step)
    for name, value in variables.items():
        text, found = re.subn(rf"^{name}=.*$", f"{name}={shlex.quote(value)}", text, flags=re.M)
        assert found == 1, f"step {step} sets no {name}"
    run = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", text], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, f"step {step} failed:\n{run.stderr}"
    return run.stdout + run.stderr


@dataclass(frozen=True)
class VenueCA:
    """What steps 1 and 2 made: the CA, and one broker certificate for localhost / 127.0.0.1."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "venue-ca.crt"

    def client_certificate(self, gate: str) -> tuple[Path, Path]:
        """Step 5 for ``gate``: its certificate and key."""
        run_recipe("5.", self.folder, GATE=gate)
        return self.folder / f"{gate}.crt", self.folder / f"{gate}.key"


def make_venue_ca(folder: Path) -> VenueCA:
    folder.mkdir(parents=True, exist_ok=True)
    run_recipe("1.", folder, VENUE=VENUE)
    printed = run_recipe("2.", folder, BROKER_HOST="localhost", BROKER_IP="127.0.0.1")
    assert "broker.crt: OK" in printed and "DNS:localhost, IP Address:127.0.0.1" in printed, printed
    for name in ("venue-ca.key", "broker.key"):
        assert (folder / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    return VenueCA(folder)


def password_file(folder: Path, users: list[str]) -> Path:
    """A mosquitto password file with ``pw-<user>`` for each user, and ``<user>.pw`` files
    holding those passwords (as a lane's password_file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gate-passwd"
    for i, user in enumerate(users):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(path), user, f"pw-{user}"], check=True)
        (folder / f"{user}.pw").write_text(f"pw-{user}\n")
    return path


def shipped_broker(workdir: Path, ca: VenueCA, passwords: Path, *, drop: tuple[str, ...] = (), uncomment: tuple[str, ...] = (),
                   bridge_to: Mosquitto | None = None) -> Mosquitto:
    """The shipped mosquitto.conf (and, with ``bridge_to``, the shipped bridge.conf to that
    broker, with the bridge user's password ``pw-bridge-north-stand``) as Debian's mosquitto
    loads them; TLS on the returned broker's ``port``. ``drop``: shipped lines left out (a
    control experiment); ``uncomment``: commented-out shipped lines turned on."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf_d = workdir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    port, local_port = free_port(), free_port()
    text = (SHIPPED / "mosquitto.conf").read_text()
    text = _replace(text, "/etc/mosquitto/gate-passwd", str(passwords))
    text = _replace(text, "/etc/mosquitto/gate-acl", str(venue_acl(workdir)))
    text = _replace(text, "/etc/mosquitto/certs/", f"{ca.folder}/")
    text = _replace(text, "\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n", 1)
    text = _replace(text, "\nlistener 1883 127.0.0.1\n", f"\nlistener {local_port} 127.0.0.1\n", 1)
    for line in drop:
        text = _replace(text, f"\n{line}\n", "\n")
    for line in uncomment:
        text = _replace(text, f"\n#{line}\n", f"\n{line}\n", 1)
    (conf_d / "gate-venue.conf").write_text(text)
    if bridge_to is not None:
        bridge = (SHIPPED / "bridge.conf").read_text()
        bridge = _replace(bridge, "VENUE", VENUE)
        bridge = _replace(bridge, "\naddress main-broker.venue.lan:8883\n", f"\naddress 127.0.0.1:{bridge_to.port}\n", 1)
        bridge = _replace(bridge, "/etc/mosquitto/certs/venue-ca.crt", str(ca.ca_file))
        bridge = _replace(bridge, "\nremote_password change-me\n", f"\nremote_password pw-{BRIDGE_USER}\n", 1)
        (conf_d / "venue-bridge.conf").write_text(bridge)
    main = [  # Debian's /etc/mosquitto/mosquitto.conf, in the test's folder
        f"pid_file {workdir}/mosquitto.pid",
        "persistence true",
        f"persistence_location {workdir}/",
        "log_dest stderr",
        f"include_dir {conf_d}",
    ]
    return Mosquitto(workdir, lines=main, port=port, ca_file=ca.ca_file)
