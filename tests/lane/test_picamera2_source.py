"""``drivers.camera.Picamera2Source`` against a fake Picamera2 that behaves as the real one does
where it matters here: ``create_video_configuration`` returns its configuration dict,
``configure`` writes the size libcamera applied back into ``camera_config`` (aligned), and
``capture_array("main")`` hands out the whole YUV420 buffer (Y plane, then U and V)."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from drivers.camera import FrameSlot, Picamera2Source

Y, CHROMA = 200, 17  # the luminance plane's value, and U/V's: a frame holding 17 took chroma rows


class FakePicamera2:
    """The parts of picamera2.Picamera2 the source uses. libcamera aligns a YUV420 size: the
    width down to a multiple of 64 here, the height to a multiple of 16 (sensor-dependent on a Pi)."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.camera_config: dict[str, Any] | None = None
        self.started = False

    def create_video_configuration(self, main: dict[str, Any], buffer_count: int, controls: dict[str, Any]) -> dict[str, Any]:
        return {"main": dict(main), "buffer_count": buffer_count, "controls": dict(controls)}

    def configure(self, config: dict[str, Any]) -> None:
        width, height = config["main"]["size"]
        config["main"]["size"] = (width // 64 * 64, height // 16 * 16)
        self.camera_config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str) -> np.ndarray:
        width, height = self.camera_config["main"]["size"]
        buffer = np.full((height * 3 // 2, width), CHROMA, np.uint8)
        buffer[:height] = Y
        return buffer

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)


def test_frames_are_the_luminance_plane_of_the_size_libcamera_applied(fake_picamera2: None) -> None:
    source = Picamera2Source(width=650, height=490)  # not aligned: libcamera makes it 640x480
    slot = FrameSlot()
    source.start(slot)
    try:
        taken = slot.take(5)
        assert taken is not None
        frame, _at = taken
        assert frame.shape == (480, 640)
        assert (frame == Y).all(), "no U/V rows in the frame the decoder sees"
        assert (source.width, source.height) == (640, 480)
    finally:
        source.stop()
