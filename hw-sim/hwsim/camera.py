"""A simulated camera: tickets rendered the way a gate camera sees them.

``photograph`` draws a code (QR, PDF417 or Aztec, made by zxing-cpp's writer) on a phone screen
or on paper, places it in a 640×480 scene at some distance, turn and tilt, and spoils it as a
real picture is spoiled: blur, sensor noise, a glare spot, a dark-mode (inverted) screen. The
``SimulatedCamera`` is a frame source for the gate's real camera reader: it puts frames into
the reader's slot at the camera's frame rate whether or not the reader keeps up, and shows
whatever is held up to it (or a folder of pictures, replayed).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm")


@dataclass(frozen=True)
class Look:
    """How a code is held up to the camera."""

    medium: str = "phone"  # "phone" (a lit screen in a dark case) or "paper"
    size: float = 0.45  # the code's longer side as a fraction of the frame's width
    turn: float = 0.0  # degrees, in the image plane
    tilt: float = 0.0  # 0..0.4: how far the far edge recedes (perspective)
    blur: float = 0.0  # Gaussian radius in pixels (out of focus, motion)
    noise: float = 2.0  # sensor noise, standard deviation in grey levels
    glare: float = 0.0  # 0..1: a bright reflection beside the code
    inverted: bool = False  # dark mode: light modules on a dark screen
    center: tuple[float, float] = (0.5, 0.5)  # where in the frame, as fractions


def symbol_image(text: str, symbology: str = "qr") -> np.ndarray:
    """The code's modules, one pixel each, with its quiet zone: 0 black, 255 white."""
    import zxingcpp

    formats = {"qr": zxingcpp.BarcodeFormat.QRCode, "pdf417": zxingcpp.BarcodeFormat.PDF417, "aztec": zxingcpp.BarcodeFormat.Aztec}
    barcode = zxingcpp.create_barcode(text, formats[symbology])
    return np.asarray(zxingcpp.write_barcode_to_image(barcode, scale=1, add_quiet_zones=True))


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """PIL's PERSPECTIVE transform maps output pixels back to input pixels: solve for that."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def _object(modules: np.ndarray, look: Look, scale: int) -> Image.Image:
    """The phone or the sheet of paper, code on it (``scale`` pixels a module), before it is
    placed in the scene."""
    code = Image.fromarray(modules).resize((modules.shape[1] * scale, modules.shape[0] * scale), Image.NEAREST)
    if look.medium == "paper":
        margin = code.height // 5
        sheet = Image.new("L", (code.width + 2 * margin, code.height + 3 * margin), 232)
        sheet.paste(code.point(lambda p: 232 if p else 25), (margin, margin))
        return sheet
    screen_px = code.point(lambda p: 20 if p else 235) if look.inverted else code.point(lambda p: 250 if p else 10)
    pad = code.width // 8
    screen = Image.new("L", (code.width + 2 * pad, code.height + 6 * pad), 20 if look.inverted else 250)
    screen.paste(screen_px, (pad, 2 * pad))
    bezel = max(4, pad // 2)
    phone = Image.new("L", (screen.width + 2 * bezel, screen.height + 2 * bezel), 35)
    phone.paste(screen, (bezel, bezel))
    return phone


def scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """What the camera sees with nobody in front of it: a lit floor, a wall, a railing."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    frame = 90 + 60 * y + 25 * np.sin(6 * x) + rng.normal(0, 3, (height, width)).astype(np.float32)
    frame[int(height * 0.62) : int(height * 0.66), :] = 60  # the railing
    return np.clip(frame, 0, 255)


def photograph(text: str, symbology: str = "qr", look: Look = Look(), width: int = 640, height: int = 480,
               seed: int = 0) -> np.ndarray:
    """One camera frame (uint8 luminance) of ``text`` held up as ``look`` says."""
    rng = np.random.default_rng(seed)
    modules = symbol_image(text, symbology)
    scale = 8  # draw sharp, then let the placement resample it as a lens would
    thing = _object(modules, look, scale)
    # Where the object's corners land: scaled to the wanted code size, turned, tilted, placed.
    factor = look.size * width / (max(modules.shape) * scale)
    w, h = thing.width * factor, thing.height * factor
    corners = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    corners[0, 0] += look.tilt * w / 2  # the top edge recedes
    corners[1, 0] -= look.tilt * w / 2
    angle = np.radians(look.turn)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = corners @ rotation.T + np.array([look.center[0] * width, look.center[1] * height])
    source = [(0, 0), (thing.width, 0), (thing.width, thing.height), (0, thing.height)]
    coefficients = _perspective_coefficients(source, [tuple(p) for p in placed])
    warped = thing.transform((width, height), Image.PERSPECTIVE, coefficients, Image.BILINEAR, fillcolor=0)
    mask = Image.new("L", thing.size, 255).transform((width, height), Image.PERSPECTIVE, coefficients, Image.BILINEAR, fillcolor=0)
    background = Image.fromarray(scene(width, height, rng).astype(np.uint8))
    frame_image = Image.composite(warped, background, mask)
    if look.blur > 0:
        frame_image = frame_image.filter(ImageFilter.GaussianBlur(look.blur))
    frame = np.asarray(frame_image, dtype=np.float32)
    if look.glare > 0:  # a reflection: a bright spot at the edge of the code
        gx, gy = placed[1] * 0.6 + placed.mean(axis=0) * 0.4
        sigma = 0.12 * height
        yy, xx = np.mgrid[0:height, 0:width]
        frame += look.glare * 255 * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma**2))
    if look.noise > 0:
        frame += rng.normal(0, look.noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def fit_picture(path: str | Path, width: int, height: int) -> np.ndarray:
    """A picture as a ``width``×``height`` frame: scaled down to fit, letterboxed in grey."""
    from drivers.camera import load_picture

    picture = Image.fromarray(load_picture(str(path)))
    picture.thumbnail((width, height))
    canvas = Image.new("L", (width, height), 128)
    canvas.paste(picture, ((width - picture.width) // 2, (height - picture.height) // 2))
    return np.asarray(canvas)


class SimulatedCamera:
    """A frame source (``drivers.camera.FrameSource``): frames at ``fps``, of whatever is shown."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, seed: int = 0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._rng = np.random.default_rng(seed)
        self._idle = [scene(width, height, self._rng).astype(np.uint8) for _ in range(3)]
        self._frames: list[np.ndarray] = self._idle
        self._until: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_put = 0
        self.first_frame_at: float | None = None  # when the current presentation was first put out

    # --- FrameSource -----------------------------------------------------------------------

    def start(self, slot: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(slot,), name="sim-camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self, slot: Any) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        turn = 0
        while not self._stop.is_set():
            with self._lock:
                if self._until is not None and time.monotonic() >= self._until:
                    self._frames, self._until = self._idle, None
                frames = self._frames
                frame = frames[turn % len(frames)]
                if frames is not self._idle and self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
            slot.put(frame)
            self.frames_put += 1
            turn += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay < 0:  # we fell behind (a busy machine): a camera does not catch up, it skips
                next_at = time.monotonic()
            else:
                self._stop.wait(delay)

    # --- what is held up to it -------------------------------------------------------------

    def show_frames(self, frames: list[np.ndarray], seconds: float | None = None) -> None:
        with self._lock:
            self._frames = frames or self._idle
            self.first_frame_at = None
            self._until = None if seconds is None else time.monotonic() + seconds

    def show(self, text: str, symbology: str = "qr", look: Look = Look(), seconds: float | None = 2.0,
             variants: int = 3) -> None:
        """Hold ``text`` up for ``seconds`` (None: until ``clear``); frames differ in their noise."""
        seed = int(self._rng.integers(1 << 30))
        frames = [photograph(text, symbology, look, self.width, self.height, seed + i) for i in range(variants)]
        self.show_frames(frames, seconds)

    def replay(self, folder: str | Path, seconds: float | None = None, each: float = 0.5) -> int:
        """Show the pictures of a folder in turn, each for ``each`` seconds (as long as someone
        would hold it up: a picture per frame would meet only some of the decoder's passes);
        returns how many."""
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        repeat = max(1, round(each * self.fps))
        self.show_frames([frame for p in paths for frame in [fit_picture(p, self.width, self.height)] * repeat], seconds)
        return len(paths)

    def clear(self) -> None:
        self.show_frames([])
