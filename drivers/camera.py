"""The camera reader: frames from a source, codes out, one scan per presentation.

A frame source (picamera2 on a Pi, the simulator's camera in CI) puts each new frame into a
``FrameSlot`` that holds only the newest one: when decoding falls behind, frames are dropped,
never queued, so what is decoded is always what the camera sees now. The reader's own thread
takes the newest frame, crops and downscales it (views, no copies), runs one decoder pass on it
(see ``drivers.decoders``) and hands new codes to ``on_code``. It never touches the decision
loop's thread: the daemon's ``on_code`` only posts a scan.

A phone held up for two seconds is seen in sixty frames: ``CodeDebouncer`` makes that one
scan. The same text is taken again only after it has been out of sight for ``hold_off``
seconds; a different text is a new scan at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from drivers.decoders import Decoder, camera_passes

log = logging.getLogger(__name__)


class CameraUnavailable(RuntimeError):
    """No camera stack (picamera2 / libcamera) or no camera on this machine."""


class FrameSlot:
    """The newest frame and the time it became available; a frame not taken is replaced."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, float] | None = None
        self.put_count = 0
        self.dropped = 0

    def put(self, frame: np.ndarray, available_at: float | None = None) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (frame, time.monotonic() if available_at is None else available_at)
            self.put_count += 1
            self._cond.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, float] | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class FrameSource(Protocol):
    """A camera: once started, it puts every frame it captures into the slot, from its own thread."""

    def start(self, slot: FrameSlot) -> None: ...

    def stop(self) -> None: ...


class CodeDebouncer:
    """Pure: which of the texts seen at ``now`` are new presentations."""

    def __init__(self, hold_off: float) -> None:
        self.hold_off = hold_off
        self._last_seen: dict[str, float] = {}

    def new_codes(self, texts: list[str], now: float) -> list[str]:
        fresh = [t for t in dict.fromkeys(texts) if now - self._last_seen.get(t, float("-inf")) > self.hold_off]
        for text in texts:
            self._last_seen[text] = now
        if len(self._last_seen) > 64:  # forget what has been gone for longer than the hold-off
            self._last_seen = {t: s for t, s in self._last_seen.items() if now - s <= self.hold_off}
        return fresh


@dataclass(frozen=True)
class Region:
    """The part of the frame where tickets are held up (pixels of the full frame)."""

    x: int
    y: int
    width: int
    height: int


def crop(frame: np.ndarray, region: Region | None, downscale: int) -> np.ndarray:
    """A view of the frame: the region of interest, every ``downscale``-th pixel."""
    if region is not None:
        frame = frame[region.y : region.y + region.height, region.x : region.x + region.width]
    if downscale > 1:
        frame = frame[::downscale, ::downscale]
    return frame


class CameraReader:
    def __init__(
        self,
        source: FrameSource,
        decoder: Decoder,
        on_code: Callable[[str, str, float], None],
        *,
        region: Region | None = None,
        downscale: int = 1,
        hold_off: float = 2.0,
        name: str = "camera",
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.on_code = on_code  # (text, symbology, frame available at [monotonic])
        self.region = region
        self.downscale = downscale
        self.debouncer = CodeDebouncer(hold_off)
        self.passes = camera_passes(decoder.symbologies)
        self.name = name
        self.slot = FrameSlot()
        self.frames_decoded = 0
        self.codes = 0
        self.errors = 0
        self.decode_ms: deque[float] = deque(maxlen=512)  # the last frames' decode times, for status and bench
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def frames_dropped(self) -> int:
        return self.slot.dropped

    def start(self) -> None:
        self.source.start(self.slot)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.source.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            taken = self.slot.take(0.5)
            if taken is None:
                continue
            frame, available_at = taken
            scan = self.passes[turn % len(self.passes)]
            turn += 1
            started = time.perf_counter()
            try:
                symbols = self.decoder.decode(crop(frame, self.region, self.downscale), scan)
            except Exception as exc:  # a bad frame is skipped, the camera goes on
                self.errors += 1
                log.warning("camera frame not decoded pass=%s error=%r", scan.name, str(exc))
                continue
            self.decode_ms.append((time.perf_counter() - started) * 1000)
            self.frames_decoded += 1
            if not symbols:
                continue
            by_text = {s.text: s.symbology for s in symbols}
            for text in self.debouncer.new_codes(list(by_text), time.monotonic()):
                self.codes += 1
                log.debug("camera read a code symbology=%s pass=%s chars=%d", by_text[text], scan.name, len(text))
                self.on_code(text, by_text[text], available_at)

    def status(self) -> dict[str, float | int]:
        times = sorted(self.decode_ms)
        return {
            "frames": self.frames_decoded,
            "dropped": self.frames_dropped,
            "codes": self.codes,
            "errors": self.errors,
            "decode_ms_p50": round(times[len(times) // 2], 3) if times else 0.0,
        }


def load_picture(path: str) -> np.ndarray:
    """A picture file's luminance, as a camera frame would carry it (``gate decode``, replays)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":  # palette pictures may carry transparency: through RGBA, quietly
            image = image.convert("RGBA")
        return np.asarray(image.convert("L"))


class Picamera2Source:
    """The Pi camera through picamera2, YUV420 so that the luminance plane is the frame itself:
    no colour conversion. Imported only when a camera is configured."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, index: int = 0) -> None:
        self.width, self.height, self.fps, self.index = width, height, fps, index
        self._camera: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, slot: FrameSlot) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraUnavailable(
                f"picamera2 is not importable ({exc}): on Raspberry Pi OS install python3-picamera2 "
                "and create the virtualenv with --system-site-packages (scripts/install-pi.sh does both)"
            ) from None
        try:
            camera = Picamera2(self.index)
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                buffer_count=3,
                controls={"FrameRate": self.fps},
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:  # libcamera: no camera connected, camera busy, ...
            raise CameraUnavailable(f"camera {self.index} cannot be started: {exc}") from None
        # libcamera may align the requested size (picamera2's configure() writes what it
        # applied back into the configuration): the Y plane is the applied size, not the asked one.
        applied = camera.camera_config["main"]["size"]
        if tuple(applied) != (self.width, self.height):
            log.warning("camera size adjusted requested=%dx%d applied=%dx%d", self.width, self.height, *applied)
        self.width, self.height = int(applied[0]), int(applied[1])
        self._camera = camera
        self._thread = threading.Thread(target=self._capture, args=(slot,), name="picamera2", daemon=True)
        self._thread.start()
        log.info("camera started index=%d size=%dx%d fps=%.0f", self.index, self.width, self.height, self.fps)

    @classmethod
    def from_config(cls, camera: Any) -> Picamera2Source:
        """From the config's ``[camera]`` table (``gate.config.CameraConfig``)."""
        return cls(camera.width, camera.height, camera.fps, camera.index)

    def _capture(self, slot: FrameSlot) -> None:
        assert self._camera is not None
        while not self._stop.is_set():
            try:
                yuv = self._camera.capture_array("main")
            except Exception as exc:
                log.error("camera capture failed error=%r", str(exc))
                self._stop.wait(1.0)
                continue
            slot.put(yuv[: self.height, : self.width])  # the Y plane; U and V follow it

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            except Exception:
                log.exception("camera did not close cleanly")
