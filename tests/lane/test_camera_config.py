"""``[camera]``'s focus, exposure and watchdog options: read at start-up, a typo or a value the
camera cannot take is an error naming the key (Klipper's rule, gate.config)."""

from __future__ import annotations

import pytest

from drivers.camera import Picamera2Source
from gate import config as gate_config
from gate.errors import ConfigError


def _camera(config_data, **options):
    config_data["camera"] = {"source": "picamera2", **options}
    return gate_config.parse(config_data, "test.toml").camera


def test_the_defaults_focus_a_camera_module_3_where_tickets_are_held(config_data):
    camera = _camera(config_data)
    assert (camera.af_mode, camera.lens_position, camera.max_exposure_ms, camera.stall_seconds) == ("manual", 5.0, 10.0, 5.0)
    source = Picamera2Source.from_config(camera)
    assert source.controls.lens_position == 5.0 and source.stall_seconds == 5.0 and source.limiter.max_us == 10_000


@pytest.mark.parametrize("options,problem", [
    ({"af_mode": "auto"}, "camera.af_mode: must be one of manual, continuous, got 'auto'"),
    ({"lens_postion": 4.0}, "camera.lens_postion: unknown key"),
    ({"lens_position": 40.0}, "camera.lens_position: must be at most 32.0"),
    ({"af_range": "close"}, "camera.af_range: must be one of macro, normal, full"),
    ({"max_exposure_ms": -1.0}, "camera.max_exposure_ms: must be at least 0.0"),
    ({"stall_seconds": 0.1}, "camera.stall_seconds: must be at least 1.0"),
    ({"stall_seconds": "5"}, "camera.stall_seconds: expected float"),
])
def test_a_wrong_camera_option_fails_at_start_naming_the_key(config_data, options, problem):
    with pytest.raises(ConfigError) as raised:
        _camera(config_data, **options)
    assert any(problem in p for p in raised.value.problems), raised.value.problems
