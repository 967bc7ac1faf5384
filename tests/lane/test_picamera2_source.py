"""``drivers.camera.Picamera2Source`` against a fake picamera2 that behaves as the real one does
(tests/support/picamera2_fake.py: its configuration dicts, libcamera's size and stride, controls
a camera does not advertise refused, a capture that waits for ever on a stalled camera, a camera
missing or busy at start)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.camera import (
    CameraControls,
    ExposureLimiter,
    FrameSlot,
    Picamera2Source,
    start_controls,
)
from tests.support.lanes import wait_until
from tests.support.picamera2_fake import CHROMA, PADDING, CameraSystem, scene

WAIT = 30.0  # seconds: a loaded machine


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch) -> CameraSystem:
    system = CameraSystem()
    system.install(monkeypatch)
    return system


@pytest.fixture
def started(system: CameraSystem):
    sources: list[Picamera2Source] = []

    def start(**kwargs: Any) -> tuple[Picamera2Source, FrameSlot]:
        source, slot = Picamera2Source(**kwargs), FrameSlot()
        sources.append(source)
        source.start(slot)
        return source, slot

    yield start
    for source in sources:
        source.stop()


def _frame(slot: FrameSlot) -> np.ndarray:
    taken = slot.take(WAIT)
    assert taken is not None, "no frame"
    return taken[0]


@pytest.mark.parametrize("align,requested,applied", [((2, 2), (650, 490), (650, 490)), ((64, 16), (650, 490), (640, 480))],
                         ids=["stride-padded", "size-adjusted"])
def test_frames_are_the_luminance_plane_of_the_size_libcamera_applied(system, started, align, requested, applied):
    system.size_align = align
    source, slot = started(width=requested[0], height=requested[1])
    frame = _frame(slot)
    width, height = applied
    assert frame.shape == (height, width)
    assert (frame == scene(width, height)).all(), "no padding bytes or U/V rows in the frame the decoder sees"
    assert not (frame == PADDING).all(axis=0).any() and not (frame == CHROMA).all(axis=1).any()
    assert (source.width, source.height) == applied
    config = system.opened[-1].camera_config
    assert config["main"]["format"] == "YUV420" and config["main"]["stride"] % 64 == 0


def test_a_camera_module_3_is_focused_where_tickets_are_held(system, started):
    """libcamera starts an imx708 in manual focus at 1 dioptre (1 m): tickets at 10-30 cm blur."""
    _source, slot = started()
    _frame(slot)
    controls = system.opened[-1].controls
    assert controls["AfMode"] == 0 and controls["LensPosition"] == 5.0, "manual focus at 20 cm"
    assert controls["FrameRate"] == 30.0


def test_continuous_autofocus_scans_the_close_range(system, started):
    _source, slot = started(controls=CameraControls(af_mode="continuous", af_range="macro"))
    _frame(slot)
    controls = system.opened[-1].controls
    assert controls["AfMode"] == 2 and controls["AfRange"] == 1 and "LensPosition" not in controls


def test_a_camera_without_a_focus_motor_starts_without_focus_controls(system, started):
    """picamera2 refuses a control the camera does not advertise: a Camera Module 2 has no AfMode."""
    system.models = ["imx219"]
    source, slot = started()
    _frame(slot)
    assert "AfMode" not in system.opened[-1].controls
    status = source.status()
    assert status["connected"] and status["model"] == "imx219" and "AfMode" in status["unsupported_controls"]


def test_the_exposure_time_is_held_under_the_limit_against_motion_blur(system, started):
    """A dim hall: auto exposure would take 33 ms a frame; the limit fixes it at 10 ms, gain does the rest."""
    source, _slot = started(controls=CameraControls(max_exposure_ms=10.0))
    camera = wait_until(lambda: system.opened and system.opened[-1], WAIT)
    wait_until(lambda: {"ExposureTimeMode": 1, "ExposureTime": 10_000} in camera.control_log, WAIT)
    assert source.status()["exposure_limited"]
    assert camera._metadata()["ExposureTime"] == 10_000 and camera._metadata()["AnalogueGain"] == 4.0


def test_the_limiter_hands_exposure_back_to_auto_now_and_then():
    limiter = ExposureLimiter(10_000, settle_frames=2, probe_seconds=5.0)
    assert limiter.update({"ExposureTime": 8_000}, 0.0) is None
    assert limiter.update({"ExposureTime": 30_000}, 1.0) == {"ExposureTimeMode": 1, "ExposureTime": 10_000}
    assert limiter.update({"ExposureTime": 10_000}, 2.0) is None
    assert limiter.update({"ExposureTime": 10_000}, 6.5) == {"ExposureTimeMode": 0}, "a scene that got brighter gets a shorter time"
    assert ExposureLimiter(0).update({"ExposureTime": 60_000}, 0.0) is None, "0: libcamera's own exposure"


def test_only_advertised_controls_are_set():
    imx708 = {"AfMode": (0, 2, 0), "AfRange": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
    assert start_controls(CameraControls(), imx708) == ({"AfMode": 0, "LensPosition": 5.0}, [])
    assert start_controls(CameraControls(), {}) == ({}, ["AfMode", "LensPosition"])


def test_a_stalled_camera_is_closed_and_opened_again(system, started):
    """picamera2's capture waits for ever on a camera that stopped delivering frames."""
    source, slot = started(stall_seconds=1.0)
    _frame(slot)
    first = system.opened[-1]
    system.stall()
    wait_until(lambda: source.status()["stalls"] >= 1 and source.status()["restarts"] >= 1, WAIT)
    status = source.status()
    assert "no frame for 1 s" in status["last_error"] and not first.is_open
    system.stall(False)
    wait_until(lambda: system.opened[-1] is not first and system.opened[-1].frames > 0, WAIT)
    wait_until(lambda: source.status()["connected"], WAIT)
    assert source.status()["last_activity_age_s"] < 1.0 * 10  # fresh frames again (not a timing claim: a bound)
    _frame(slot)


def test_a_camera_missing_at_start_is_opened_when_it_appears(system, started):
    system.models = []
    source, slot = started()  # no exception: the lane keeps a camera reader that retries
    status = source.status()
    assert not status["connected"] and "camera 0 cannot be opened" in status["last_error"]
    assert status["last_activity_age_s"] is None
    system.connect("imx708")
    frame = _frame(slot)
    assert frame.shape == (480, 640)
    wait_until(lambda: source.status()["connected"], WAIT)


def test_a_busy_camera_is_tried_again(system, started):
    system.busy = True  # rpicam-still holds it
    source, slot = started()
    assert "did not complete" in source.status()["last_error"]
    wait_until(lambda: source.status()["open_failures"] >= 2, WAIT)
    system.busy = False
    _frame(slot)


def test_stop_releases_a_camera_waiting_for_a_frame(system, started):
    source, slot = started(stall_seconds=60.0)
    _frame(slot)
    system.stall()
    camera = system.opened[-1]
    source.stop()
    assert not camera.is_open and not source._thread.is_alive()
