"""A USB barcode scanner in keyboard mode (HID keyboard wedge) through evdev (python-evdev).

Keyboard wedge is the factory mode of most USB scanners: the scanner *types* each code as key
presses, as the keyboard layout it was set up for would produce them, and ends it with a suffix
key (Enter by default, Tab on some). This driver:

- grabs the device exclusively (``EVIOCGRAB``), so the keystrokes never reach a console, a getty
  or a desktop: a ticket typed into a root shell is not a feature;
- turns key presses back into characters with the scanner's layout (``LAYOUTS``: US and German
  here; the layout is the scanner's setting, not the Pi's), Shift, Caps Lock and AltGr;
- ends a line at the suffix key (``enter``, ``tab``) or, with ``suffix = "none"``, after
  ``line_timeout`` of silence; an overlong line is dropped, as on the serial scanner;
- reopens the device when it goes away (unplugged, scanner rebooted) and comes back
  (``ReaderThread``), the udev rule giving it a stable name (``/dev/gate-scanner-hid``).

A key the layout does not know (a function key, Ctrl held) becomes U+FFFD, so the line is
visibly damaged and refused downstream (``unreadable``), never silently shortened.

``KeyDecoder`` is pure (event codes in, lines out) and knows the kernel's key codes itself
(``linux/input-event-codes.h``, a stable ABI): it runs and is tested where evdev is not
installed. evdev is imported only when the scanner is opened (``[scanner] kind = "hid"``).
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterable
from typing import Any

from drivers.reader_thread import ReaderThread

log = logging.getLogger(__name__)

EV_SYN, EV_KEY = 0x00, 0x01
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2
KEY_TAB, KEY_ENTER, KEY_KPENTER = 15, 28, 96
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_CAPSLOCK, KEY_RIGHTALT = 42, 54, 58, 100
KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT = 29, 97, 56
SHIFTS = {KEY_LEFTSHIFT, KEY_RIGHTSHIFT}
CTRLS = {KEY_LEFTCTRL, KEY_RIGHTCTRL}
SUFFIXES = {"enter": {KEY_ENTER, KEY_KPENTER}, "tab": {KEY_TAB}, "none": set()}
UNKNOWN = "\ufffd"

# The main block by key code (input-event-codes.h): row by row, what the key types alone and
# with Shift. Keys 2-13, 16-27, 30-41, 43-53 are the four rows of a PC keyboard; 86 is the key
# beside left Shift on ISO keyboards (KEY_102ND).
_ROWS = ((2, 13), (16, 27), (30, 41), (43, 53))


def _layout(rows: tuple[str, str, str, str], shifted: tuple[str, str, str, str], altgr: dict[int, str],
            iso: str = "") -> dict[int, tuple[str, str, str]]:
    keys: dict[int, tuple[str, str, str]] = {}
    for (first, last), plain, shift in zip(_ROWS, rows, shifted, strict=True):
        assert len(plain) == len(shift) == last - first + 1
        for offset, (p, s) in enumerate(zip(plain, shift, strict=True)):
            keys[first + offset] = (p, s, altgr.get(first + offset, ""))
    if iso:
        keys[86] = (iso[0], iso[1], altgr.get(86, ""))
    keys[57] = (" ", " ", "")
    for code, char in zip((71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 55, 98), "789-456+1230.*/", strict=True):
        keys[code] = (char, char, "")  # the keypad (Num Lock on: scanners in "numeric keypad" mode)
    return keys


LAYOUTS: dict[str, dict[int, tuple[str, str, str]]] = {
    # US (the factory setting of nearly every scanner)
    "us": _layout(("1234567890-=", "qwertyuiop[]", "asdfghjkl;'`", "\\zxcvbnm,./"),
                  ("!@#$%^&*()_+", "QWERTYUIOP{}", 'ASDFGHJKL:"~', "|ZXCVBNM<>?"), {}, iso="\\|"),
    # German (QWERTZ; the scanner's "German keyboard" setting). Dead keys (^ and ´) type themselves.
    "de": _layout(("1234567890ß´", "qwertzuiopü+", "asdfghjklöä^", "#yxcvbnm,.-"),
                  ('!"§$%&/()=?`', "QWERTZUIOPÜ*", "ASDFGHJKLÖÄ°", "'YXCVBNM;:_"),
                  {3: "²", 4: "³", 8: "{", 9: "[", 10: "]", 11: "}", 12: "\\", 16: "@", 18: "€", 27: "~", 50: "µ", 86: "|"},
                  iso="<>"),
}


class KeyDecoder:
    """Key events in, complete lines out. Pure: no device, no clock."""

    def __init__(self, layout: str = "us", suffix: str = "enter", max_line: int = 1024) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown keyboard layout {layout!r} (known: {', '.join(LAYOUTS)})")
        self.keys = LAYOUTS[layout]
        self.terminators = SUFFIXES[suffix]
        self.max_line = max_line
        self._held: set[int] = set()
        self._caps = False
        self._line: list[str] = []
        self._discarding = False
        self.overlong = 0
        self.unknown_keys = 0

    def feed(self, events: Iterable[tuple[int, int, int]]) -> list[str]:
        """``(type, code, value)`` events, as evdev reads them; the lines they complete."""
        lines: list[str] = []
        for kind, code, value in events:
            if kind != EV_KEY:
                continue
            if value == KEY_UP:
                self._held.discard(code)
                continue
            if value == KEY_DOWN:
                self._held.add(code)
            if code in SHIFTS or code in CTRLS or code in (KEY_RIGHTALT, KEY_LEFTALT):
                continue
            if code == KEY_CAPSLOCK:
                self._caps = not self._caps if value == KEY_DOWN else self._caps
                continue
            if code in self.terminators:
                if self._discarding:
                    self._discarding = False
                elif self._line:
                    lines.append("".join(self._line))
                self._line.clear()
                continue
            self._type(self._char(code))
        return lines

    def _char(self, code: int) -> str:
        if self._held & CTRLS or KEY_LEFTALT in self._held:
            self.unknown_keys += 1
            return UNKNOWN  # a control sequence: not a character of a ticket
        if code == KEY_ENTER or code == KEY_KPENTER:
            return "\n"  # a suffix other than the configured one: part of the text (refused downstream)
        if code == KEY_TAB:
            return "\t"
        plain, shifted, altgr = self.keys.get(code, ("", "", ""))
        if not plain:
            self.unknown_keys += 1
            return UNKNOWN
        if KEY_RIGHTALT in self._held:
            if altgr:
                return altgr
            self.unknown_keys += 1
            return UNKNOWN
        shift = bool(self._held & SHIFTS)
        if plain.isalpha() and self._caps:
            shift = not shift
        return shifted if shift else plain

    def _type(self, char: str) -> None:
        if self._discarding:
            return
        self._line.append(char)
        if len(self._line) > self.max_line:
            self._line.clear()
            self._discarding = True
            self.overlong += 1
            log.warning("scanner line longer than %d characters dropped", self.max_line)

    @property
    def partial(self) -> bool:
        return bool(self._line) or self._discarding

    def take_partial(self) -> str:
        """End the current line where it stands (no suffix came)."""
        text = "" if self._discarding else "".join(self._line)
        self._line.clear()
        self._discarding = False
        return text


def open_evdev(path: str) -> Any:
    """The input device at ``path`` (evdev imported here, only for ``kind = "hid"``)."""
    try:
        import evdev
    except ImportError as exc:
        raise HidUnavailable(f"python-evdev is not installed ({exc}): apt install python3-evdev, "
                             "or pip install evdev in gate's virtualenv") from None
    return evdev.InputDevice(path)


class HidUnavailable(OSError):
    """python-evdev missing: the reader cannot start (an OSError, so the thread keeps retrying
    and says so once, like a scanner that is not plugged in)."""


class HidScanner(ReaderThread):
    kind = "scanner"
    open_errors = (OSError,)
    use_errors = (OSError,)

    def __init__(
        self,
        device: str,
        on_line: Callable[[str], None],
        *,
        layout: str = "us",
        suffix: str = "enter",
        max_line: int = 1024,
        line_timeout: float = 0.5,
        unterminated: str = "drop",
        reconnect_interval: float = 1.0,
        grab: bool = True,
        open_device: Callable[[str], Any] = open_evdev,
        name: str = "scanner",
    ) -> None:
        super().__init__(device, reconnect_interval, name)
        KeyDecoder(layout, suffix)  # an unknown layout fails at start-up, not in the thread
        self.on_line = on_line
        self.layout = layout
        self.suffix = suffix
        self.max_line = max_line
        self.line_timeout = line_timeout
        # Without a suffix key, silence is the only end of a code: what it ended is the code.
        self.unterminated = "accept" if suffix == "none" else unterminated
        self.grab = grab
        self.open_device = open_device
        self.lines_read = 0
        self.grabbed = False
        self.unknown_keys = 0

    def open(self) -> Any:
        device = self.open_device(self.device)
        if self.grab:
            try:
                device.grab()  # EVIOCGRAB: nobody else (console, getty, X) gets these keys
            except OSError as exc:
                device.close()
                raise OSError(f"cannot grab {self.device} (is another program holding it?): {exc}") from None
        self.grabbed = self.grab
        log.info("hid scanner opened device=%s name=%r layout=%s suffix=%s grabbed=%s", self.device,
                 getattr(device, "name", "?"), self.layout, self.suffix, self.grabbed)
        return device

    def close(self, device: Any) -> None:
        self.grabbed = False
        try:
            if self.grab:
                device.ungrab()
        except OSError:
            pass  # unplugged: the grab went with the device
        device.close()

    def use(self, device: Any) -> None:
        decoder = KeyDecoder(self.layout, self.suffix, self.max_line)
        last_key = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([device.fd], [], [], 0.05)
            now = time.monotonic()
            if ready:
                events = [(e.type, e.code, e.value) for e in device.read()]  # OSError (ENODEV) when unplugged
                if any(kind == EV_KEY for kind, _code, _value in events):
                    last_key = now
                for line in decoder.feed(events):
                    self._deliver(line)
                self.unknown_keys = decoder.unknown_keys
            elif decoder.partial and now - last_key >= self.line_timeout:
                partial = decoder.take_partial()
                if self.unterminated == "accept" and partial:
                    self._deliver(partial)
                else:
                    self.note_error("line without suffix dropped")
                    log.warning("scanner partial line without suffix dropped chars=%d", len(partial))

    def _deliver(self, line: str) -> None:
        self.lines_read += 1
        self.note_activity()
        self.on_line(line)
