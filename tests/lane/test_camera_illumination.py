"""The camera's light ([camera] illumination on [gpio.illumination]): on while someone is in front
of the camera (or always), off after a while with nobody there, off in the safe state. A
simulated lane: hw-sim's camera and gpiozero's MockFactory pins, watched as the turnstile's are."""

from __future__ import annotations

import numpy as np
import pytest
from hwsim.camera import Look, SimulatedCamera

from drivers.camera import Illumination, PresenceDetector
from gate import config as gate_config
from gate.errors import ConfigError
from tests.support.lanes import wait_until

WAIT = 30.0
LIGHT_PIN = 12


def _lit_lane(start_lane, config_data, **camera):
    config_data["gpio"]["illumination"] = {"pin": LIGHT_PIN}
    config_data["camera"] = {"source": "simulator", "hold_off": 1.0, **camera}
    lane = start_lane(config_data)
    wait_until(lambda: lane.daemon.readers.camera.frames_decoded > 10, WAIT)
    return lane


def test_the_light_comes_on_when_a_ticket_is_held_up_and_goes_off_when_nobody_is_there(start_lane, config_data, tickets):
    lane = _lit_lane(start_lane, config_data, illumination_hold=1.0)
    assert lane.output("illumination") is False, "nobody there: dark"
    camera = lane.daemon.hardware.camera
    lane.turnstile.person("in", True)
    camera.show(tickets.static(), "qr", Look(medium="paper"), seconds=None)
    wait_until(lambda: lane.output("illumination"), WAIT)
    assert lane.decisions.get(timeout=WAIT)["accepted"]
    camera.clear()
    wait_until(lambda: not lane.output("illumination"), WAIT)
    lane.stop()
    assert lane.output("illumination") is False


def test_an_always_on_light_is_off_once_the_lane_stops(start_lane, config_data):
    lane = _lit_lane(start_lane, config_data, illumination="always")
    assert lane.output("illumination") is True
    lane.stop()
    assert lane.output("illumination") is False, "the safe state: off"


def test_illumination_needs_its_pin_and_is_presence_by_default_when_wired(config_data):
    config_data["camera"] = {"source": "simulator", "illumination": "always"}
    with pytest.raises(ConfigError) as raised:
        gate_config.parse(config_data, "test.toml")
    assert any("camera.illumination: 'always' needs the light's pin ([gpio.illumination]" in p for p in raised.value.problems)
    config_data["camera"] = {"source": "simulator"}
    assert gate_config.parse(config_data, "test.toml").camera.illumination == "off"
    config_data["gpio"]["illumination"] = {"pin": LIGHT_PIN}
    assert gate_config.parse(config_data, "test.toml").camera.illumination == "presence"


def test_sensor_noise_is_nobody_and_a_hand_is_somebody():
    camera = SimulatedCamera()
    detector = PresenceDetector()
    assert not any(detector.changed(frame) for frame in camera._idle * 10), "the empty scene, frame after frame"
    hand = camera._idle[0].copy()
    hand[150:400, 200:420] = 200  # something bright in front of the camera
    assert detector.changed(hand)


def test_the_light_switching_does_not_keep_itself_on():
    """The light changes the whole picture when it switches: that is not someone arriving."""
    switched: list[bool] = []
    light = Illumination(switched.append, "presence", hold=1.0)
    dark = np.full((480, 640), 40, np.uint8)
    lit = np.full((480, 640), 160, np.uint8)
    light.seen(0.0)
    assert switched == [True]
    now = 0.0
    while now < 5.0:  # nobody there: the lit scene, then the dark one once it goes off
        now += 1 / 30
        light.frame(lit if light.on else dark, now)
    assert switched == [True, False], "on once, off once: no flicker"
