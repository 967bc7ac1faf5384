"""Barcode decoders behind one small interface: a luminance frame in, the codes found out.

zxing-cpp is the default (QR, PDF417, Aztec); pyzbar (libzbar) is the alternative, for QR only.
Only the symbologies enabled in the config are searched: every detector costs time on every
frame, and most of the frames a gate camera sees hold no code at all.

A *pass* is one way of looking at a frame: some symbologies, maybe inverted (a phone in dark
mode shows light modules on a dark screen), maybe turned a quarter (a PDF417 ticket held
sideways). The camera runs one pass per frame, in turn, which keeps the cost of an idle frame
low while a code held up for a moment still meets every pass; a still picture (``gate
decode``) gets every pass until one reads something, then a last exhaustive one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # numpy is imported with the decoder libraries, not by the config or the CLI
    import numpy as np

log = logging.getLogger(__name__)

SYMBOLOGIES = ("qr", "pdf417", "aztec")
DECODERS = ("zxing", "pyzbar")
DECODER_SYMBOLOGIES = {"zxing": SYMBOLOGIES, "pyzbar": ("qr",)}


class DecoderUnavailable(RuntimeError):
    """The decoder's library (or the system library under it) is not installed."""


Point = tuple[float, float]


@dataclass(frozen=True)
class Symbol:
    symbology: str
    text: str  # the content as text, control characters kept as they are (not made readable)
    raw: bytes
    # Where it is: its corners in the frame given to ``decode`` (a pass's turn, enlargement and
    # quarter turn undone), so that the camera's snapshot can black it out. Empty: not known.
    corners: tuple[Point, ...] = field(default=(), compare=False)

    def box(self, margin: float = 0.0, least: float = 0.0) -> tuple[int, int, int, int] | None:
        """``(left, top, right, bottom)`` around the corners, grown on every side by ``margin``
        times the box's shorter side (a PDF417 is long and flat), at least ``least`` pixels; None
        when the position is not known."""
        if not self.corners:
            return None
        xs, ys = [x for x, _ in self.corners], [y for _, y in self.corners]
        grow = max(margin * min(max(xs) - min(xs), max(ys) - min(ys)), least)
        return (math.floor(min(xs) - grow), math.floor(min(ys) - grow), math.ceil(max(xs) + grow), math.ceil(max(ys) + grow))


@dataclass(frozen=True)
class Pass:
    symbologies: tuple[str, ...]
    inverted: bool = False
    rotated: bool = False  # a quarter turn: PDF417 (a stacked linear code) is read along its rows
    turn: float = 0.0  # degrees the frame is turned first: a PDF417 held a few degrees off level
    scale: float = 1.0  # enlarged first (bilinear): codes whose modules are under ~2 pixels

    @property
    def name(self) -> str:
        return ("+".join(self.symbologies) + ("/inverted" if self.inverted else "") + ("/rotated" if self.rotated else "")
                + (f"/turned{self.turn:+g}" if self.turn else "") + (f"/x{self.scale:g}" if self.scale != 1.0 else ""))


# zxing-cpp follows a PDF417's rows only within about ±3° of level (measured on rendered GT1
# tickets: 0 of 36 frames turned 4-12° read as they are). Turning the frame back by each of
# these reads every one of them, each turn covering about ±3° around itself.
PDF417_TURNS = (5.0, -5.0, 8.0, -8.0, 11.0, -11.0)
UPSCALE = 1.5  # on the ZXing photographs, recovers what a pass at the camera's own size misses


def camera_passes(symbologies: tuple[str, ...]) -> tuple[Pass, ...]:
    """The camera's schedule: each symbology as printed, on a dark-mode screen, a PDF417 held
    sideways (QR and Aztec read in any turn already) or a few degrees off level, and every
    symbology enlarged 1.5×, for small codes. The first symbology (QR by default, what most
    tickets are) as printed comes every other frame, so that it is read within two frames of
    being held up; the other symbologies as printed and the first on a dark screen come every
    fourth frame in turn (each within 12 frames, 0.4 s at 30 fps, with the three default
    symbologies); the rarer poses fill the frames between (each within one round, 40 frames)."""
    first, *rest = [Pass((s,)) for s in symbologies]
    common = [*rest, Pass((symbologies[0],), inverted=True)]
    rare = [Pass((s,), inverted=True) for s in symbologies[1:]]
    rare += [Pass((s,), rotated=True) for s in symbologies if s == "pdf417"]
    rare += [Pass((s,), turn=turn) for s in symbologies if s == "pdf417" for turn in PDF417_TURNS]
    rare += [Pass(tuple(symbologies), scale=UPSCALE)]
    schedule: list[Pass] = []
    for i, other in enumerate(rare):
        schedule += [first, common[i % len(common)], first, other]
    return tuple(schedule)


class Decoder(Protocol):
    name: str
    symbologies: tuple[str, ...]

    def decode(self, frame: np.ndarray, scan: Pass) -> list[Symbol]:
        """The codes one pass finds in a 2-D uint8 luminance array (no copy is kept)."""

    def exhaustive(self, frame: np.ndarray) -> list[Symbol]:
        """Every option the library has at once, however long it takes (still pictures)."""


def _pose(frame: np.ndarray, scan: Pass) -> np.ndarray:
    import numpy as np

    if scan.turn or scan.scale != 1.0:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(frame))
        if scan.turn:  # nearest neighbour: 0.4 ms at 640x480; the corners turned out are black
            image = image.rotate(scan.turn, resample=Image.NEAREST)
        if scan.scale != 1.0:  # bilinear: nearest-neighbour enlarging gains nothing (measured)
            image = image.resize((round(image.width * scan.scale), round(image.height * scan.scale)), Image.BILINEAR)
        frame = np.asarray(image)
    if scan.rotated:
        frame = np.ascontiguousarray(frame.T)  # a transpose is a quarter turn plus a mirror: fine for reading
    if scan.inverted:
        frame = 255 - frame
    return frame


def _unpose(points: list[Point], frame: np.ndarray, scan: Pass) -> tuple[Point, ...]:
    """Points found in ``_pose(frame, scan)``, in ``frame``'s own coordinates."""
    if scan.rotated:  # the transpose undone
        points = [(y, x) for x, y in points]
    if scan.scale != 1.0:
        points = [(x / scan.scale, y / scan.scale) for x, y in points]
    if scan.turn:  # PIL turns counter-clockwise about the centre (y grows downwards): turn back
        cx, cy = frame.shape[1] / 2, frame.shape[0] / 2
        cos, sin = math.cos(math.radians(scan.turn)), math.sin(math.radians(scan.turn))
        points = [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]
    return tuple(points)


class ZxingDecoder:
    name = "zxing"

    def __init__(self, symbologies: tuple[str, ...] = SYMBOLOGIES) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise DecoderUnavailable(f"zxing-cpp is not installed ({exc}); pip install zxing-cpp") from None
        self._zx = zxingcpp
        self.symbologies = tuple(symbologies)
        self._formats = {
            "qr": zxingcpp.BarcodeFormat.QRCode,
            "pdf417": zxingcpp.BarcodeFormat.PDF417,
            "aztec": zxingcpp.BarcodeFormat.Aztec,
        }
        self._names = {fmt: name for name, fmt in self._formats.items()}

    def _read(self, frame: np.ndarray, symbologies: tuple[str, ...], unpose: Callable[[list[Point]], tuple[Point, ...]] = tuple,
              **options: Any) -> list[Symbol]:
        formats = [self._formats[s] for s in symbologies]
        found = self._zx.read_barcodes(frame, formats=formats, text_mode=self._zx.TextMode.Plain, **options)
        return [Symbol(self._names.get(b.format, str(b.format)), b.text, bytes(b.bytes), unpose(_corners(b.position)))
                for b in found]

    def decode(self, frame: np.ndarray, scan: Pass) -> list[Symbol]:
        return self._read(_pose(frame, scan), scan.symbologies, lambda points: _unpose(points, frame, scan),
                          try_rotate=False, try_invert=False, try_downscale=False)

    def exhaustive(self, frame: np.ndarray) -> list[Symbol]:
        return self._read(frame, self.symbologies, try_rotate=True, try_invert=True, try_downscale=True)


def _corners(position: Any) -> list[Point]:
    return [(float(p.x), float(p.y)) for p in (position.top_left, position.top_right, position.bottom_right, position.bottom_left)]


class PyzbarDecoder:
    name = "pyzbar"

    def __init__(self, symbologies: tuple[str, ...] = ("qr",)) -> None:
        unsupported = set(symbologies) - set(DECODER_SYMBOLOGIES[self.name])
        if unsupported:
            raise ValueError(f"pyzbar reads QR only, not {', '.join(sorted(unsupported))}")
        try:
            from pyzbar import pyzbar
        except ImportError as exc:
            raise DecoderUnavailable(f"pyzbar is not installed ({exc}); pip install pyzbar") from None
        except OSError as exc:  # pyzbar loads libzbar when imported
            raise DecoderUnavailable(f"libzbar is missing ({exc}); apt-get install libzbar0") from None
        self._zbar = pyzbar
        self.symbologies = tuple(symbologies)

    def decode(self, frame: np.ndarray, scan: Pass) -> list[Symbol]:
        import numpy as np

        posed = np.ascontiguousarray(_pose(frame, scan))
        height, width = posed.shape
        found = self._zbar.decode((posed.tobytes(), width, height), symbols=[self._zbar.ZBarSymbol.QRCODE])
        return [Symbol("qr", b.data.decode("utf-8", errors="replace"), bytes(b.data),
                       _unpose([(float(p.x), float(p.y)) for p in b.polygon], frame, scan)) for b in found]

    def exhaustive(self, frame: np.ndarray) -> list[Symbol]:
        return []  # zbar has no further options: the passes were all it can do


def make_decoder(name: str, symbologies: tuple[str, ...]) -> Decoder:
    if name == "zxing":
        return ZxingDecoder(symbologies)
    if name == "pyzbar":
        return PyzbarDecoder(symbologies)
    raise ValueError(f"unknown decoder {name!r} (known: {', '.join(DECODERS)})")


def every_symbol(decoder: Decoder, frame: np.ndarray) -> list[Symbol]:
    """Everything any pass or the exhaustive search reads in ``frame`` (a snapshot to be masked):
    every pass, not only until the first one reads something."""
    found = [symbol for scan in dict.fromkeys(camera_passes(decoder.symbologies)) for symbol in decoder.decode(frame, scan)]
    return found + decoder.exhaustive(frame)


def read_picture(decoder: Decoder, frame: np.ndarray) -> list[Symbol]:
    """What a still picture holds: the camera's passes in turn, then the exhaustive search."""
    for scan in dict.fromkeys(camera_passes(decoder.symbologies)):  # each pass once
        found = decoder.decode(frame, scan)
        if found:
            return found
    return decoder.exhaustive(frame)
