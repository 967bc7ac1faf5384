"""The simulated lane's config (``gate.toml``), shared by the demo, the venue demo, the
harnesses and the bench: the daemon on mock pins, a pty scanner, a control socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENT = "demo-concert"
CONFIG = """\
[gate]
id = "demo-lane"
venue = "demo-venue"
state_dir = {state}
log_level = "info"

[policy]
events = [{event}]

[turnstile]
pulse_ms = {pulse_ms}
passage_timeout = {timeout}
deny_display = 0.3

[gpio]
pin_factory = "mock"
[gpio.unlock_in]
pin = 17
[gpio.green]
pin = 27
[gpio.red]
pin = 22
[gpio.buzzer]
pin = 24
[gpio.passage_in]
pin = 5
bounce_ms = 0
[gpio.fire_alarm]
pin = 13
bounce_ms = 0

[scanner]
port = {scanner}
reconnect_interval = 0.1

[[trust.gt1_issuers]]
name = "demo box office"
public_key = {issuer}

[simulator]
enabled = true
control_socket = {socket}
walk_time = {walk}

[status]
socket = {status}
"""

HOLD_OFF = 0.5
CAMERA = f"""
[camera]
source = "simulator"
hold_off = {HOLD_OFF}
"""

def _q(value: Any) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(workdir: Path, issuer_public: str, *, walk: float, timeout: float, pulse_ms: int = 300,
                 camera: bool = False) -> Path:
    """The simulated lane's gate.toml: the daemon, its pty scanner and control socket in workdir."""
    path = workdir / "gate.toml"
    path.write_text(
        (CONFIG + (CAMERA if camera else "")).format(
            state=_q(workdir / "state"),
            event=_q(EVENT),
            timeout=timeout,
            pulse_ms=pulse_ms,
            scanner=_q(workdir / "scanner"),
            issuer=_q(issuer_public),
            socket=_q(workdir / "sim.sock"),
            status=_q(workdir / "status.sock"),
            walk=walk,
        )
    )
    return path
