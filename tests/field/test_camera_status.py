"""A lane whose Pi camera stalls: ``gate status`` and ``gate doctor`` say so, with the age of the
last frame, and the lane opens the camera again. The lane runs in this process on the fake
picamera2 (tests/support/picamera2_fake.py); the commands run as a technician runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lanes import wait_until, write_config
from tests.support.picamera2_fake import CameraSystem

WAIT = 30.0


def _gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, timeout=120, check=False)


def _doctor_camera(config: Path) -> dict[str, str]:
    run = _gate("doctor", "--json", "--config", str(config))
    return next(c for c in json.loads(run.stdout)["checks"] if c["name"] == "camera")


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch) -> CameraSystem:
    system = CameraSystem()
    system.install(monkeypatch)
    return system


def test_a_stalled_camera_is_shown_by_status_and_doctor_and_comes_back(start_lane, config_data, tmp_path, system):
    config_data["camera"] = {"source": "picamera2", "stall_seconds": 1.0}
    lane = start_lane(config_data)
    config = write_config(tmp_path / "gate.toml", config_data)

    def camera() -> dict:
        return lane.daemon.readers.status()["camera"]

    wait_until(lambda: camera()["connected"] and camera()["last_activity_age_s"] is not None, WAIT)
    assert _doctor_camera(config)["result"] == "ok"

    system.stall()
    wait_until(lambda: camera()["restarts"] >= 1 and not camera()["connected"], WAIT)
    check = _doctor_camera(config)
    assert check["result"] == "fail" and "camera stalled" in check["detail"] and "restarts" in check["detail"], check
    screen = _gate("status", "--once", "--width", "200", "--config", str(config)).stdout
    assert "camera DOWN" in screen and "restarts" in screen and "no frame for 1 s" in screen, screen

    system.stall(False)
    wait_until(lambda: camera()["connected"], WAIT)
    check = _doctor_camera(config)
    assert check["result"] == "warn" and "stalls" in check["detail"], check
    status = json.loads(_gate("status", "--json", "--config", str(config)).stdout)["readers"]["camera"]
    assert status["stalls"] >= 1 and status["last_activity_age_s"] < WAIT and status["model"] == "imx708"


def test_a_lane_started_before_its_camera_was_connected_reads_when_it_is(start_lane, config_data, tmp_path, system):
    system.models = []
    config_data["camera"] = {"source": "picamera2"}
    lane = start_lane(config_data)
    status = lane.daemon.readers.status()["camera"]
    assert status["connected"] is False and "camera 0 cannot be opened" in status["last_error"]
    assert "problem" not in status, "the reader runs and retries"
    system.connect()
    wait_until(lambda: lane.daemon.readers.status()["camera"]["frames"] > 0, WAIT)
