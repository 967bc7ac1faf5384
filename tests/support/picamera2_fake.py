"""A stand-in for picamera2 (Raspberry Pi OS's python3-picamera2, never on this machine) that
behaves as the real one does where ``drivers.camera.Picamera2Source`` depends on it. Each
behaviour is picamera2's or libcamera's own, read in their sources (picamera2 3e6dff0,
libcamera 26bfadc):

- ``Picamera2(n)`` looks the camera up in ``global_camera_info()[n]``: an IndexError when there is
  no such camera; a RuntimeError ("Camera __init__ sequence did not complete.") when libcamera
  cannot acquire it (busy).
- ``create_video_configuration`` / ``create_still_configuration`` return the whole configuration
  dict (use_case, buffer_count, main, lores, raw, controls with picamera2's defaults merged in,
  ...); a stream key other than format/size/stride/preserve_ar is a ValueError; sizes are
  aligned to even numbers (``align_stream(optimal=False)``).
- ``configure`` writes what libcamera applied back into ``camera_config["main"]``: the size (which
  libcamera may adjust) and the stride (the Pi 5's ISP rounds a YUV420 row up to 64 bytes).
- A control the camera does not advertise is a RuntimeError ("Control X is not advertised by
  libcamera"), at configure and at ``set_controls``; ``FrameRate`` is picamera2's own name for
  FrameDurationLimits. A Camera Module 2 (imx219) has no AfMode/AfRange/LensPosition.
- ``capture_request(wait=None)`` waits for the next frame for ever; ``wait=seconds`` raises
  ``TimeoutError`` (concurrent.futures') and leaves the job queued; ``cancel_all_and_flush``
  cancels it (CancelledError in the waiting thread). A request's ``make_array("main")`` is the
  YUV420 buffer as picamera2 shapes it, ``(height * 3 // 2, stride)``: the Y plane, then U and V.
- Frame metadata carries ExposureTime (µs), AnalogueGain, DigitalGain as the Pi's AGC divides a
  scene's needed exposure up: under ExposureTimeMode manual the time is fixed and the gain moves.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FuturesTimeoutError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHROMA = 17  # the U and V planes' value: a frame holding 17 took chroma rows
PADDING = 3  # the bytes after a row's last pixel, up to the stride

_COMMON_CONTROLS: dict[str, tuple[Any, Any, Any]] = {  # as ipa_base.cpp advertises them
    "AeEnable": (False, True, True),
    "ExposureTimeMode": (0, 1, 0),
    "ExposureTime": (1, 66666, 20000),
    "AnalogueGainMode": (0, 1, 0),
    "AnalogueGain": (1.0, 16.0, 1.0),
    "AeExposureMode": (0, 3, 0),
    "FrameDurationLimits": (33333, 120000, (33333, 33333)),
    "NoiseReductionMode": (0, 4, 0),
    "ScalerCrop": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), (0, 0, 0, 0)),
}
_FOCUS_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AfMode": (0, 2, 0),
    "AfRange": (0, 2, 0),
    "AfSpeed": (0, 1, 0),
    "AfTrigger": (0, 1, 0),
    "AfPause": (0, 2, 0),
    "LensPosition": (0.0, 15.0, 1.0),  # imx708: 0 (infinity) to 15 dioptres; starts at 1.0 (1 m)
}
MODELS = {"imx708": {**_COMMON_CONTROLS, **_FOCUS_CONTROLS}, "imx219": dict(_COMMON_CONTROLS)}
SENSOR_RESOLUTION = {"imx708": (4608, 2592), "imx219": (3280, 2464)}
VIRTUAL = {"FrameRate": "FrameDurationLimits"}  # picamera2's Controls._VIRTUAL_FIELDS_MAP_


def scene(width: int, height: int) -> np.ndarray:
    """A luminance frame with structure (a gradient and a bright square), so its padding and
    chroma rows would show if they leaked into a frame."""
    frame = np.tile(np.linspace(40, 160, width, dtype=np.uint8), (height, 1))
    frame[height // 4 : height // 2, width // 4 : width // 2] = 230
    return frame


@dataclass
class CameraSystem:
    """The machine as libcamera sees it, shared by every Picamera2 object (as ``Picamera2._cm``)."""

    models: list[str] = field(default_factory=lambda: ["imx708"])  # connected cameras; [] = none
    size_align: tuple[int, int] = (2, 2)  # how libcamera adjusts a YUV420 size (down to multiples)
    stride_align: int = 64
    needed_exposure_us: float = 40_000.0  # exposure time x gain the scene needs (a dim hall)
    picture: Callable[[int, int], np.ndarray] = scene
    busy: bool = False  # another process holds the camera
    stalled: bool = False  # the camera delivers no frames (a loose ribbon, a hung ISP)
    opened: list[FakePicamera2] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def stall(self, stalled: bool = True) -> None:
        with self.cond:
            self.stalled = stalled
            self.cond.notify_all()

    def connect(self, model: str = "imx708") -> None:
        with self.cond:
            self.models.append(model)

    def install(self, monkeypatch: Any) -> types.ModuleType:
        """``import picamera2`` gives this system's fake (pytest's monkeypatch undoes it)."""
        system = self
        module = types.ModuleType("picamera2")

        class Picamera2(FakePicamera2):
            def __init__(self, camera_num: int = 0) -> None:
                super().__init__(system, camera_num)

            @staticmethod
            def global_camera_info() -> list[dict[str, Any]]:
                return system.global_camera_info()

        module.Picamera2 = Picamera2  # type: ignore[attr-defined]
        module.TimeoutError = FuturesTimeoutError  # type: ignore[attr-defined]
        module.CancelledError = CancelledError  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "picamera2", module)
        return module

    def global_camera_info(self) -> list[dict[str, Any]]:
        return [{"Model": model, "Location": 2, "Rotation": 0, "Id": f"/base/axi/pcie@120000/rp1/i2c@88000/{model}@1a",
                 "Num": i} for i, model in enumerate(self.models)]


class _Job:
    def __init__(self) -> None:
        self.cancelled = False


class FakeRequest:
    def __init__(self, camera: FakePicamera2, metadata: dict[str, Any]) -> None:
        self._camera = camera
        self._metadata = metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        stream = self._camera.camera_config[name]
        (width, height), stride = stream["size"], stream["stride"]
        buffer = np.full((height * 3 // 2, stride), CHROMA, np.uint8)
        buffer[:height, width:] = PADDING
        buffer[:height, :width] = self._camera.system.picture(width, height)
        return buffer

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    def __init__(self, system: CameraSystem, camera_num: int = 0) -> None:
        self.system = system
        info = system.global_camera_info()[camera_num]  # IndexError: no such camera, as picamera2
        if system.busy:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.model = info["Model"]
        self.camera_num = camera_num
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}
        self.control_log: list[dict[str, Any]] = []  # every set_controls, in order
        self._jobs: list[_Job] = []
        self.frames = 0
        system.opened.append(self)

    # --- what the camera is ----------------------------------------------------------------

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return dict(MODELS[self.model])

    @property
    def camera_properties(self) -> dict[str, Any]:
        return {"Model": self.model, "PixelArraySize": SENSOR_RESOLUTION[self.model]}

    # --- configurations --------------------------------------------------------------------

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any] | None:
        if updates is None:
            return None
        for key in updates:
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size', 'stride', 'preserve_ar')")
        stream = {**defaults, **updates}
        width, height = stream["size"]
        stream["size"] = (width - width % 2, height - height % 2)  # align_stream(optimal=False)
        return stream

    def _configuration(self, use_case: str, main: dict[str, Any], lores: Any, raw: Any, buffer_count: int,
                       controls: dict[str, Any], main_defaults: dict[str, Any], frame_durations: tuple[int, int],
                       noise_reduction: int, display: Any, encode: Any) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main_stream = self._stream(main_defaults, main)
        assert main_stream is not None
        return {
            "use_case": use_case, "transform": "Transform(identity)", "colour_space": "ColorSpace(Smpte170m)",
            "buffer_count": buffer_count, "queue": True, "main": main_stream,
            "lores": self._stream({"format": "YUV420", "size": main_stream["size"], "preserve_ar": False}, lores),
            "raw": None if raw is None else {"format": "BGGR_PISP_COMP1", "size": main_stream["size"], **raw},
            "controls": {"NoiseReductionMode": noise_reduction, "FrameDurationLimits": frame_durations} | dict(controls),
            "sensor": {}, "display": display, "encode": encode,
        }

    def create_video_configuration(self, main: dict[str, Any] = {}, lores: Any = None, raw: Any = {}, transform: Any = None,  # noqa: B006
                                   colour_space: Any = None, buffer_count: int = 6, controls: dict[str, Any] = {},  # noqa: B006
                                   display: Any = "main", encode: Any = "main", queue: bool = True, sensor: Any = {},  # noqa: B006
                                   use_case: str = "video") -> dict[str, Any]:
        return self._configuration(use_case, main, lores, raw, buffer_count, controls,
                                   {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, (33333, 33333), 1,
                                   display, encode)

    def create_still_configuration(self, main: dict[str, Any] = {}, lores: Any = None, raw: Any = {}, transform: Any = None,  # noqa: B006
                                   colour_space: Any = None, buffer_count: int = 1, controls: dict[str, Any] = {},  # noqa: B006
                                   display: Any = None, encode: Any = None, queue: bool = True, sensor: Any = {},  # noqa: B006
                                   use_case: str = "still") -> dict[str, Any]:
        return self._configuration(use_case, main, lores, raw, buffer_count, controls,
                                   {"format": "BGR888", "size": SENSOR_RESOLUTION[self.model], "preserve_ar": True},
                                   (100, 1000000 * 1000), 2, display, encode)

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = camera_config.copy()  # shallow, as picamera2's: the stream dicts are the caller's
        main = config["main"]
        if main["format"] not in ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "BGR888", "RGB888"):
            raise RuntimeError("Bad format " + main["format"] + " in stream main")
        self._check_controls(config["controls"])
        (width, height), (wa, ha) = main["size"], self.system.size_align
        main["size"] = (width - width % wa, height - height % ha)  # libcamera's validate(): Adjusted
        yuv = main["format"] in ("YUV420", "YVU420")
        bytes_per_pixel = 1 if yuv else 4 if main["format"].startswith("X") else 3
        row = main["size"][0] * bytes_per_pixel
        main["stride"] = -(-row // self.system.stride_align) * self.system.stride_align
        main["framesize"] = main["stride"] * main["size"][1] * 3 // 2 if yuv else main["stride"] * main["size"][1]
        self.camera_config = config
        self.controls = dict(config["controls"])

    def _check_controls(self, controls: dict[str, Any]) -> None:
        advertised = self.camera_controls
        for name in controls:
            if VIRTUAL.get(name, name) not in advertised:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")

    # --- running ---------------------------------------------------------------------------

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def set_controls(self, controls: dict[str, Any]) -> None:
        self._check_controls(controls)
        with self.system.cond:
            self.controls.update(controls)
            self.control_log.append(dict(controls))

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> FakeRequest:
        timeout = None if wait is None or wait is True else float(wait)
        deadline = None if timeout is None else time.monotonic() + timeout
        job = _Job()
        system = self.system
        with system.cond:
            self._jobs.append(job)
            while True:
                if job.cancelled:
                    raise CancelledError()
                if self.started and not system.stalled:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise FuturesTimeoutError()  # the job stays queued, as picamera2's does
                system.cond.wait(remaining)
            self._jobs.remove(job)
        time.sleep(1 / 60)  # frames come at the camera's pace, not as fast as they are asked for
        self.frames += 1
        return FakeRequest(self, self._metadata())

    def capture_array(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> np.ndarray:
        """The next frame's array (the request released): waits as capture_request does."""
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def _metadata(self) -> dict[str, Any]:
        needed = self.system.needed_exposure_us
        frame_max = self.controls.get("FrameDurationLimits", (33333, 33333))[1]
        if self.controls.get("ExposureTimeMode") == 1:  # manual time, automatic gain
            exposure = float(self.controls.get("ExposureTime", 20000))
        else:
            exposure = min(needed, float(frame_max))
        gain = needed / exposure
        return {"ExposureTime": int(exposure), "AnalogueGain": max(1.0, min(gain, 16.0)), "DigitalGain": min(gain, 1.0),
                "LensPosition": float(self.controls.get("LensPosition", 1.0)), "FrameDuration": frame_max,
                "SensorTimestamp": time.monotonic_ns()}

    def cancel_all_and_flush(self) -> None:
        with self.system.cond:
            for job in self._jobs:
                job.cancelled = True
            self._jobs = []
            self.system.cond.notify_all()

    def stop(self) -> None:
        with self.system.cond:
            self.started = False
            self.system.cond.notify_all()

    def close(self) -> None:
        self.stop()
        self.is_open = False
        self.camera_config = {}
