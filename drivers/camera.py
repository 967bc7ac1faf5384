"""The camera reader: frames from a source, codes out, one scan per presentation.

A frame source (picamera2 on a Pi, the simulator's camera in CI) puts each new frame into a
``FrameSlot`` that holds only the newest one: when decoding falls behind, frames are dropped,
never queued, so what is decoded is always what the camera sees now. The reader's own thread
takes the newest frame, crops and downscales it (views, no copies), runs one decoder pass on it
(see ``drivers.decoders``) and hands new codes to ``on_code``. It never touches the decision
loop's thread: the daemon's ``on_code`` only posts a scan.

A phone held up for two seconds is seen in sixty frames: ``CodeDebouncer`` makes that one
scan. The same text is taken again only after it has been out of sight for ``hold_off``
seconds; a different text is a new scan at once. A PDF417 text counts only once the frame
turned two ways has given it (``SecondRead``): its error detection is too weak to trust one read.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np

from drivers.decoders import Decoder, Pass, Symbol, camera_passes, every_symbol

log = logging.getLogger(__name__)

# A snapshot (``gate camera snapshot``) goes to any member of the status socket's group, who may
# not read tickets: every code in it is blacked out (see ``CameraReader.snapshot``).
FRAME_KEEP = 10.0  # seconds the newest frame is kept for a snapshot: a stalled camera keeps none
MASK_RECENT = 5.0  # seconds where the camera read a code stays blacked out in snapshots
MASK_MARGIN = 0.15  # of a symbol's shorter side, blacked out beyond it on every side...
MASK_LEAST = 8.0  # ...but at least this many pixels (of the decoded view)
MASK_ROUNDS = 3  # black out, read again: a frame still readable after this many is refused


class CameraUnavailable(RuntimeError):
    """No camera stack (picamera2 / libcamera) or no camera on this machine."""


class FrameSlot:
    """The newest frame and the time it became available; a frame not taken is replaced."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, float] | None = None
        self.put_count = 0
        self.dropped = 0
        self.last_put_at: float | None = None  # monotonic

    def put(self, frame: np.ndarray, available_at: float | None = None) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self.last_put_at = time.monotonic()
            self._frame = (frame, self.last_put_at if available_at is None else available_at)
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


# Symbologies whose text counts only once it has been read at two turns (``SecondRead``). QR and Aztec sample a grid
# laid by their finder patterns and protect the amount of their error correction in the symbol
# itself (QR's BCH-coded format information, Aztec's Reed-Solomon-coded mode message), so a
# wrong text that passes their checks is vanishingly rare. A PDF417 reader follows the symbol's
# rows, and on a slanted ticket a row slip mixes codewords of neighbouring rows; its only check
# is its Reed-Solomon error correction, whose amount whoever printed the ticket chose (as little
# as two codewords, level 0), and that can "correct" a mixed row into another valid message.
# Measured: zxing-cpp reads a rendered GT1 ticket turned 4° as a wrong text, valid=True, and
# the right one on other passes (tests/lane/test_decoder_passes.py).
CONFIRMED_SYMBOLOGIES = frozenset({"pdf417"})


class SecondRead:
    """Pure: which of a frame's symbols count. A PDF417 text counts once passes of two different
    turns (``Pass.turn``) have read it within ``window`` decoded frames; after that each read that
    follows within the window counts at once. The same turn does not confirm itself: zxing-cpp's
    wrong text of a ticket 4° off level comes again on the next frames at that turn (and enlarged
    at it), while a turn a few degrees away reads the right one or nothing. The window is in the
    camera's own decoded frames, not seconds, so that a busy machine dropping frames loses no
    confirmation. Other symbologies count at once."""

    def __init__(self, window: int, symbologies: frozenset[str] = CONFIRMED_SYMBOLOGIES) -> None:
        self.window = window
        self.symbologies = symbologies
        self._read: dict[tuple[str, str], tuple[int, frozenset[float]]] = {}  # last read, turns it was read at

    def counted(self, symbols: list[Symbol], frame: int, turn: float) -> list[Symbol]:
        self._read = {key: seen for key, seen in self._read.items() if frame - seen[0] <= self.window}
        counted = []
        for symbol in symbols:
            if symbol.symbology not in self.symbologies:
                counted.append(symbol)
                continue
            key = (symbol.symbology, symbol.text)
            turns = self._read.get(key, (frame, frozenset()))[1] | {turn}
            self._read[key] = (frame, turns)
            if len(turns) >= 2:
                counted.append(symbol)
        return counted


CROSS_TURN = 1.5  # degrees: zxing-cpp follows a PDF417's rows within about 3°


def cross_checks(scan: Pass) -> tuple[Pass, ...]:
    """The frame looked at again, turned ``CROSS_TURN`` either way from the pass that read a
    PDF417 it could not count yet: a code that pass read right (within about 3° of its rows) is
    within 1-2° of one of these, so a real ticket is usually counted on the frame it was first
    read on; run only on such frames, never on an idle one."""
    return tuple(replace(scan, symbologies=("pdf417",), turn=scan.turn + d) for d in (CROSS_TURN, -CROSS_TURN))


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


class PresenceDetector:
    """Something in front of the camera: a sample of the frame (every 8th pixel each way) differs
    from the empty scene, learnt slowly while nothing is there. Sensor noise is a few grey levels;
    a hand, a phone or a ticket moves many samples by tens."""

    def __init__(self, threshold: float = 25.0, fraction: float = 0.02, learn: float = 0.05) -> None:
        self.threshold = threshold
        self.fraction = fraction  # of the samples that must change
        self.learn = learn
        self._background: np.ndarray | None = None

    def reset(self) -> None:
        """Learn the scene anew (the light was switched: everything looks different)."""
        self._background = None

    def changed(self, frame: np.ndarray) -> bool:
        sample = frame[4::8, 4::8].astype(np.float32)
        if self._background is None or self._background.shape != sample.shape:
            self._background = sample
            return False
        moved = float(np.mean(np.abs(sample - self._background) > self.threshold)) > self.fraction
        if not moved:
            self._background += self.learn * (sample - self._background)
        return moved


class Illumination:
    """The camera's light (``[camera] illumination``, on ``[gpio.illumination]``): "always" on
    while the camera reads; "presence" on from the moment something moves in front of the
    camera or a code is read, off once nothing has moved for ``hold`` seconds. After each switch
    the scene is learnt again (the light itself changes every frame). ``switch`` drives the
    output (``LaneOutputs.set_light``); the lane's safe state switches it off."""

    SETTLE = 0.5  # seconds after a switch before movement counts (exposure settles)

    def __init__(self, switch: Callable[[bool], None], mode: str, hold: float = 10.0) -> None:
        if mode not in ("presence", "always"):
            raise ValueError(f"illumination mode {mode!r}")
        self.switch = switch
        self.mode = mode
        self.hold = hold
        self.on = False
        self.detector = PresenceDetector()
        self._seen_at = float("-inf")
        self._settle_until = 0.0

    def start(self) -> None:
        if self.mode == "always":
            self._set(True, time.monotonic())

    def seen(self, now: float) -> None:
        """Someone is there (a code was read)."""
        self._seen_at = now
        if not self.on:
            self._set(True, now)

    def frame(self, frame: np.ndarray, now: float) -> None:
        if self.mode != "presence":
            return
        if now < self._settle_until:
            self.detector.reset()
            return
        if self.detector.changed(frame):
            self.seen(now)
        elif self.on and now - self._seen_at > self.hold:
            self._set(False, now)

    def _set(self, on: bool, now: float) -> None:
        self.switch(on)
        self.on = on
        self._settle_until = now + self.SETTLE
        self.detector.reset()
        log.info("camera illumination %s mode=%s", "on" if on else "off", self.mode)


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
        self.second_read = SecondRead(window=len(self.passes))
        self.name = name
        self.slot = FrameSlot()
        self.frames_decoded = 0
        self.codes = 0
        self.errors = 0
        self.decode_ms: deque[float] = deque(maxlen=512)  # the last frames' decode times, for status and bench
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_frame: tuple[np.ndarray, float] | None = None  # the newest frame taken, for snapshot()
        self._recent: dict[str, tuple[float, dict[str, Any], tuple[int, int, int, int] | None]] = {}  # read lately
        self._recent_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()  # one snapshot at a time: each reads the frame many times
        # The ticket format's name of a text, for a snapshot's report (the lane sets it: drivers
        # know no ticket formats); None: not told.
        self.describe: Callable[[str], str | None] | None = None
        self.illumination: Illumination | None = None  # the lane's light, switched from this thread

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
                held = self._last_frame
                if held is not None and time.monotonic() - held[1] > FRAME_KEEP:
                    self._last_frame = None  # a stalled camera keeps no frame (that may show a ticket)
                continue
            frame, available_at = taken
            self._last_frame = taken
            self._light(lambda light, now, frame=frame: light.frame(frame, now))
            scan = self.passes[turn % len(self.passes)]
            turn += 1
            started = time.perf_counter()
            view = crop(frame, self.region, self.downscale)
            try:
                symbols = self.decoder.decode(view, scan)
            except Exception as exc:  # a bad frame is skipped, the camera goes on
                self.errors += 1
                log.warning("camera frame not decoded pass=%s error=%r", scan.name, str(exc))
                continue
            self.decode_ms.append((time.perf_counter() - started) * 1000)
            self.frames_decoded += 1
            if not symbols:
                continue
            self._remember(symbols)  # every code, counted or not: a snapshot blacks them all out
            self._light(lambda light, now: light.seen(now))
            counted = self.second_read.counted(symbols, self.frames_decoded, scan.turn)
            if len(counted) < len(symbols):
                counted += self._cross_check(view, scan, symbols, counted)
            by_text = {s.text: s.symbology for s in counted}
            for text in self.debouncer.new_codes(list(by_text), time.monotonic()):
                self.codes += 1
                log.debug("camera read a code symbology=%s pass=%s chars=%d", by_text[text], scan.name, len(text))
                self.on_code(text, by_text[text], available_at)

    def _cross_check(self, view: np.ndarray, scan: Pass, symbols: list[Symbol], counted: list[Symbol]) -> list[Symbol]:
        """A PDF417 read but not counted yet (``SecondRead``): the same frame at the turns of
        ``cross_checks`` until it counts; what they count."""
        more: list[Symbol] = []
        for check in cross_checks(scan):
            try:
                again = self.decoder.decode(view, check)
            except Exception as exc:  # noqa: BLE001 - as a frame that cannot be decoded: skipped
                log.warning("camera frame not cross-checked pass=%s error=%r", check.name, str(exc))
                break
            self._remember(again)
            more += self.second_read.counted(again, self.frames_decoded, check.turn)
            if {s.text for s in symbols} <= {s.text for s in counted + more}:
                break
        if len(more) == 0:
            log.debug("camera read a PDF417 once, waiting for a second read pass=%s", scan.name)
        return more

    def _light(self, action: Callable[[Illumination, float], None]) -> None:
        """Tell the light what was seen; a failing output is logged, never the end of reading."""
        if self.illumination is None:
            return
        try:
            action(self.illumination, time.monotonic())
        except Exception as exc:
            log.warning("camera illumination not switched error=%r", str(exc))

    def _remember(self, symbols: list[Symbol]) -> None:
        """Where codes were read (in the full frame) and what they were, never their text: a
        snapshot in the next ``MASK_RECENT`` seconds blacks the place out and says what was read."""
        now = time.monotonic()
        offset = (self.region.x, self.region.y) if self.region is not None else (0, 0)
        with self._recent_lock:
            for symbol in symbols:
                box = symbol.box(MASK_MARGIN, MASK_LEAST)
                if box is not None:  # from the cropped, downscaled view to the frame
                    d = self.downscale
                    box = (box[0] * d + offset[0], box[1] * d + offset[1], box[2] * d + offset[0], box[3] * d + offset[1])
                key = f"{symbol.symbology}:{hashlib.sha256(symbol.text.encode()).hexdigest()}"
                known = self._recent.get(key)
                self._recent[key] = (now, known[1] if known else self._summary(symbol), box)
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] <= MASK_RECENT}

    def _summary(self, symbol: Symbol) -> dict[str, Any]:
        """What a snapshot says of a code: symbology, ticket format, length, a hash prefix."""
        try:
            ticket_format = self.describe(symbol.text) if self.describe is not None else None
        except Exception:  # noqa: BLE001 - the lane's hook: a report, never the end of reading
            ticket_format = None
        return {"symbology": symbol.symbology, "ticket_format": ticket_format, "chars": len(symbol.text),
                "sha256": hashlib.sha256(symbol.text.encode()).hexdigest()[:12]}

    def status(self) -> dict[str, Any]:
        """Counters, and the source's own state when it has one (``Picamera2Source.status``: stalls,
        restarts, ``last_error``); ``last_activity_age_s`` is the age of the newest frame."""
        times = sorted(self.decode_ms)
        put_at = self.slot.last_put_at
        status: dict[str, Any] = {
            "frames": self.frames_decoded,
            "dropped": self.frames_dropped,
            "codes": self.codes,
            "errors": self.errors,
            "decode_ms_p50": round(times[len(times) // 2], 3) if times else 0.0,
            "last_error": None,
            "last_activity_age_s": None if put_at is None else round(time.monotonic() - put_at, 1),
        }
        if self.illumination is not None:
            status["illumination"] = "on" if self.illumination.on else "off"
        source_status = getattr(self.source, "status", None)
        if callable(source_status):
            status.update(source_status())
        return status

    def snapshot(self) -> dict[str, Any]:
        """The newest frame, as a PNG (base64) with what is needed to read it as the lane does
        (``gate camera snapshot``, through the status socket). Raises CameraUnavailable when no
        frame has come in the last ``FRAME_KEEP`` seconds.

        The snapshot goes to technicians, who may not read tickets, and the frame is the one being
        decoded: while a ticket is held up it *is* the ticket. So every code in it is blacked out
        (its box and a margin, the rest of the frame stays for aiming): where the camera read
        one in the last ``MASK_RECENT`` seconds, and whatever any pass still reads in the frame,
        again until nothing reads. A frame that still reads after ``MASK_ROUNDS`` rounds, or a code
        whose place is not known, is refused. ``found`` says what was read (never the text) and
        ``masked`` how many areas were blacked out; ``sharpness`` is the unmasked frame's."""
        import base64
        import io

        from PIL import Image

        held = self._last_frame
        if held is None or time.monotonic() - held[1] > FRAME_KEEP:
            self._last_frame = None
            raise CameraUnavailable(f"the camera has delivered no frame in the last {FRAME_KEEP:g} s")
        if not self._snapshot_lock.acquire(blocking=False):
            raise CameraUnavailable("another snapshot is being made: try again in a moment")
        try:
            frame, available_at = held
            masked, found, areas = self._masked(np.array(frame, dtype=np.uint8))
            sharp = sharpness(crop(frame, self.region, self.downscale))
        finally:
            self._snapshot_lock.release()
        buffer = io.BytesIO()
        Image.fromarray(masked).save(buffer, format="PNG")
        region = self.region
        return {
            "width": int(frame.shape[1]),
            "height": int(frame.shape[0]),
            "age_s": round(time.monotonic() - available_at, 3),
            "region": None if region is None else [region.x, region.y, region.width, region.height],
            "downscale": self.downscale,
            "sharpness": round(sharp, 1),
            "found": found,
            "masked": areas,
            "png": base64.b64encode(buffer.getvalue()).decode("ascii"),
        }

    def _masked(self, frame: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]], int]:
        """``frame`` (a copy, changed in place) with every code blacked out; what was read; how
        many areas were blacked out."""
        now = time.monotonic()
        with self._recent_lock:
            recent = [(summary, box) for at, summary, box in self._recent.values() if now - at <= MASK_RECENT]
        found = {summary["sha256"] + summary["symbology"]: summary for summary, _ in recent}
        boxes = [box for _, box in recent if box is not None]
        if len(boxes) < len(recent):
            raise CameraUnavailable("a code was read lately and its place in the frame is not known: no snapshot; try again in a few seconds")
        areas = 0
        for _ in range(MASK_ROUNDS + 1):
            for left, top, right, bottom in boxes:
                frame[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = 0
            areas += len(boxes)
            symbols = every_symbol(self.decoder, frame)
            if not symbols:
                return frame, list(found.values()), areas
            for symbol in symbols:
                summary = self._summary(symbol)
                found.setdefault(summary["sha256"] + summary["symbology"], summary)
            boxes = [box for box in (s.box(MASK_MARGIN, MASK_LEAST) for s in symbols) if box is not None]
            if len(boxes) < len(symbols):
                break
        raise CameraUnavailable("the frame holds a code that could not be blacked out: no snapshot (tickets are never handed out)")


def sharpness(frame: np.ndarray) -> float:
    """The variance of the Laplacian: how much fine detail a frame holds. It rises as the lens
    comes into focus on what is in front of it; compare frames of the same scene (``gate camera
    snapshot``), the number means nothing across scenes."""
    f = frame.astype(np.float32)
    if f.shape[0] < 3 or f.shape[1] < 3:
        return 0.0
    laplacian = f[:-2, 1:-1] + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:] - 4 * f[1:-1, 1:-1]
    return float(laplacian.var())


def load_picture(path: str) -> np.ndarray:
    """A picture file's luminance, as a camera frame would carry it (``gate decode``, replays)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":  # palette pictures may carry transparency: through RGBA, quietly
            image = image.convert("RGBA")
        return np.asarray(image.convert("L"))


# --- the Pi camera ------------------------------------------------------------------------------
#
# Control names, types and values are libcamera's (src/libcamera/control_ids_core.yaml), as the
# Raspberry Pi IPA advertises them (src/ipa/rpi/common/ipa_base.cpp: AfMode, AfRange and
# LensPosition only for a camera with a focus motor, such as the Camera Module 3's imx708).
# picamera2 refuses a control the camera does not advertise (Controls.__setattr__: "Control X is
# not advertised by libcamera"), so only advertised ones are set.
AF_MODE = {"manual": 0, "continuous": 2}  # controls::AfModeManual, AfModeContinuous (int32)
AF_RANGE = {"normal": 0, "macro": 1, "full": 2}  # controls::AfRangeNormal, AfRangeMacro, AfRangeFull
EXPOSURE_AUTO, EXPOSURE_MANUAL = 0, 1  # controls::ExposureTimeModeAuto, ExposureTimeModeManual


@dataclass(frozen=True)
class CameraControls:
    """What the lane asks of the camera beyond size and rate (``[camera]``, gate.config)."""

    af_mode: str = "manual"
    lens_position: float = 5.0  # dioptres: LensPosition is 1 / distance in metres (5.0 = 20 cm)
    af_range: str = "macro"
    max_exposure_ms: float = 10.0  # 0: libcamera's own auto exposure, unbounded


def start_controls(wanted: CameraControls, advertised: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The controls to configure the camera with, of those it advertises (picamera2's
    ``camera_controls``), and the names left out because it does not."""
    controls: dict[str, Any] = {"AfMode": AF_MODE[wanted.af_mode]}
    if wanted.af_mode == "manual":
        controls["LensPosition"] = float(wanted.lens_position)  # ignored by libcamera unless AfModeManual
    else:
        controls["AfRange"] = AF_RANGE[wanted.af_range]
    kept = {name: value for name, value in controls.items() if name in advertised}
    return kept, [name for name in controls if name not in advertised]


class ExposureLimiter:
    """Keeps the exposure time at or under ``max_us`` against motion blur, the only way libcamera
    allows: its auto exposure has no upper bound on the exposure time but the frame duration
    (FrameDurationLimits), so when auto exposure goes above the limit, the exposure time is fixed
    at the limit (ExposureTimeMode manual, ExposureTime) while the gain stays automatic
    (AnalogueGainMode auto: the Pi's AGC then divides the exposure up into gain alone,
    agc_channel.cpp divideUpExposure). Every ``probe_seconds`` it hands the exposure back to auto,
    so a scene that became brighter (the sun came out) gets a shorter time again.

    Pure: fed each frame's metadata, it says which controls to set (or None)."""

    def __init__(self, max_us: int, settle_frames: int = 15, probe_seconds: float = 20.0) -> None:
        self.max_us = max_us
        self.settle_frames = settle_frames  # controls take a few frames to apply, the AGC more to converge
        self.probe_seconds = probe_seconds
        self.limited = False
        self._frames_since = settle_frames
        self._limited_at = 0.0

    def update(self, metadata: dict[str, Any], now: float) -> dict[str, Any] | None:
        if self.max_us <= 0:
            return None
        self._frames_since += 1
        if self._frames_since < self.settle_frames:
            return None
        exposure = metadata.get("ExposureTime")
        if not self.limited and isinstance(exposure, (int, float)) and exposure > self.max_us:
            self.limited, self._frames_since, self._limited_at = True, 0, now
            return {"ExposureTimeMode": EXPOSURE_MANUAL, "ExposureTime": int(self.max_us)}
        if self.limited and now - self._limited_at >= self.probe_seconds:
            self.limited, self._frames_since = False, 0
            return {"ExposureTimeMode": EXPOSURE_AUTO}
        return None


class Picamera2Source:
    """The Pi camera through picamera2, YUV420 so that the luminance plane is the frame itself:
    no colour conversion. Imported only when a camera is configured.

    Never silently dead: each frame is waited for at most ``stall_seconds`` (picamera2's
    ``capture_request(wait=seconds)`` raises TimeoutError; without ``wait`` it waits forever on a
    camera that stopped delivering). A stall closes the camera (``cancel_all_and_flush`` first, as
    picamera2 documents for a camera that stopped responding) and opens it again. A camera that
    cannot be opened (missing, busy) is tried again and again, 1 s after the failure, then
    doubling up to ``retry_max`` seconds. ``status()`` says what happened and when the last frame
    came."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, index: int = 0, *,
                 controls: CameraControls = CameraControls(), stall_seconds: float = 5.0, retry_max: float = 30.0) -> None:
        self.width, self.height, self.fps, self.index = width, height, fps, index
        self.requested = (width, height)
        self.controls = controls
        self.stall_seconds = stall_seconds
        self.retry_max = retry_max
        self.limiter = ExposureLimiter(int(controls.max_exposure_ms * 1000))
        self._picamera2: Any = None  # the module's Picamera2 class
        self._camera: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.last_frame_at: float | None = None  # monotonic, of the last frame
        self._opened_at = 0.0  # monotonic: the stall clock starts when the camera starts too
        self.frames = 0
        self.stalls = 0  # no frame for stall_seconds
        self.restarts = 0  # closed and opened again after a stall or a failed capture
        self.open_failures = 0
        self.model = ""
        self.unsupported: list[str] = []  # controls this camera does not have (no focus motor: AfMode, ...)

    @classmethod
    def from_config(cls, camera: Any) -> Picamera2Source:
        """From the config's ``[camera]`` table (``gate.config.CameraConfig``)."""
        controls = CameraControls(camera.af_mode, camera.lens_position, camera.af_range, camera.max_exposure_ms)
        return cls(camera.width, camera.height, camera.fps, camera.index, controls=controls, stall_seconds=camera.stall_seconds)

    def start(self, slot: FrameSlot) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraUnavailable(
                f"picamera2 is not importable ({exc}): on Raspberry Pi OS install python3-picamera2 "
                "and create the virtualenv with --system-site-packages (scripts/install-pi.sh does both)"
            ) from None
        self._picamera2 = Picamera2
        self._stop.clear()
        try:
            self._open()
        except CameraUnavailable as exc:  # missing or busy now: the capture thread tries again
            self._failed(str(exc))
        self._thread = threading.Thread(target=self._capture, args=(slot,), name="picamera2", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            camera = self._picamera2(self.index)
        except Exception as exc:  # IndexError: no camera `index`; RuntimeError: busy, ...
            raise CameraUnavailable(f"camera {self.index} cannot be opened: {exc!r}") from None
        try:
            controls, self.unsupported = start_controls(self.controls, camera.camera_controls)
            controls["FrameRate"] = self.fps  # picamera2's own: FrameDurationLimits from the rate
            config = camera.create_video_configuration(
                main={"size": self.requested, "format": "YUV420"}, buffer_count=3, controls=controls)
            camera.configure(config)
            camera.start()
        except Exception as exc:  # libcamera: camera busy, configuration refused, ...
            self._close(camera)
            raise CameraUnavailable(f"camera {self.index} cannot be started: {exc!r}") from None
        # libcamera may align the requested size (picamera2's configure() writes what it
        # applied back into the configuration): the Y plane is the applied size, not the asked one.
        applied = camera.camera_config["main"]["size"]
        if tuple(applied) != tuple(self.requested):
            log.warning("camera size adjusted requested=%dx%d applied=%dx%d", *self.requested, *applied)
        self.width, self.height = int(applied[0]), int(applied[1])
        self.model = str(camera.camera_properties.get("Model", ""))
        if self.unsupported:
            log.info("camera has no such controls (no focus motor?) model=%s left_out=%s", self.model, ",".join(self.unsupported))
        self.limiter = ExposureLimiter(self.limiter.max_us)
        with self._lock:
            self._camera = camera
            self._opened_at = time.monotonic()
        log.info("camera started index=%d model=%s size=%dx%d fps=%.0f controls=%s", self.index, self.model,
                 self.width, self.height, self.fps, ",".join(f"{k}={v}" for k, v in controls.items()))

    def _failed(self, error: str) -> None:
        self.open_failures += 1
        self.last_error = error
        log.error("camera not available error=%r retry=backoff", error)

    def _capture(self, slot: FrameSlot) -> None:
        delay = 1.0
        while not self._stop.is_set():
            camera = self._camera
            if camera is None:
                if self._stop.wait(delay):
                    return
                try:
                    self._open()
                    delay = 1.0
                except CameraUnavailable as exc:
                    self._failed(str(exc))
                    delay = min(delay * 2, self.retry_max)
                continue
            try:
                yuv, metadata = self._next_frame(camera)
            except TimeoutError:
                self.stalls += 1
                self._restart(f"no frame for {self.stall_seconds:g} s (camera stalled)")
                continue
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.last_error = f"capture failed: {exc!r}"
                log.error("camera capture failed error=%r", str(exc))
                if self._silent_for() >= self.stall_seconds:
                    self._restart(f"no frame for {self.stall_seconds:g} s ({exc!r})")
                else:
                    self._stop.wait(0.2)
                continue
            self.last_frame_at = time.monotonic()
            self.frames += 1
            slot.put(yuv[: self.height, : self.width])  # the Y plane; U and V follow it
            change = self.limiter.update(metadata, self.last_frame_at)
            if change is not None:
                try:
                    camera.set_controls(change)
                    log.info("camera exposure %s max_us=%d", "limited" if self.limiter.limited else "auto again", self.limiter.max_us)
                except Exception as exc:
                    log.warning("camera exposure control refused error=%r (exposure left to libcamera)", str(exc))
                    self.limiter.max_us = 0

    def _next_frame(self, camera: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """The next frame and its metadata; TimeoutError after ``stall_seconds`` without one."""
        request = camera.capture_request(wait=self.stall_seconds)
        try:
            return request.make_array("main"), request.get_metadata()  # a copy: (height * 3 / 2, stride) for YUV420
        finally:
            request.release()

    def _restart(self, why: str) -> None:
        self.last_error = why
        log.error("camera restarting index=%d why=%r restarts=%d", self.index, why, self.restarts + 1)
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            self._close(camera)
        if self._stop.is_set():
            return
        self.restarts += 1
        try:
            self._open()
        except CameraUnavailable as exc:
            self._failed(str(exc))

    def _close(self, camera: Any) -> None:
        """Cancel what waits for a frame, stop, close: in a thread of its own, so that a camera
        that hangs in libcamera is left behind (logged) rather than taking the capture thread."""

        def close() -> None:
            try:
                camera.cancel_all_and_flush()
                camera.stop()
                camera.close()
            except Exception as exc:
                log.warning("camera did not close cleanly error=%r", str(exc))

        closer = threading.Thread(target=close, name="picamera2-close", daemon=True)
        closer.start()
        closer.join(self.stall_seconds)
        if closer.is_alive():
            log.error("camera close hangs index=%d: left behind", self.index)

    def _silent_for(self) -> float:
        """Seconds since the last frame, or since the camera started if none came since."""
        return time.monotonic() - max(self.last_frame_at or 0.0, self._opened_at)

    def status(self) -> dict[str, Any]:
        at = self.last_frame_at
        return {
            "connected": self._camera is not None and at is not None and time.monotonic() - at < self.stall_seconds,
            "model": self.model,
            "size": f"{self.width}x{self.height}",
            "last_error": self.last_error,
            "last_activity_age_s": None if at is None else round(time.monotonic() - at, 1),
            "stalls": self.stalls,
            "restarts": self.restarts,
            "open_failures": self.open_failures,
            "exposure_limited": self.limiter.limited,
            "unsupported_controls": self.unsupported,
        }

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            self._close(camera)
        if self._thread is not None:
            self._thread.join(2.0)
