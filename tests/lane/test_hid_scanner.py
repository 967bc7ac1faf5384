"""USB scanners in keyboard mode (``drivers.hid_scanner``): a recorded ``evtest`` capture of a
scanner set to a German layout, key streams typed from hand-written layout tables (independent
of the driver's), the reader thread on a device that replays events through a pipe (select
works on it as on /dev/input/event*), unplugged and plugged again, and, where /dev/uinput
exists, a real kernel keyboard through evdev."""

from __future__ import annotations

import errno
import os
import queue
import re
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drivers.hid_scanner import EV_KEY, EV_SYN, UNKNOWN, HidScanner, KeyDecoder
from gate import config as config_module
from gate.errors import ConfigError
from tests.support.lanes import wait_until

RECORDINGS = Path(__file__).parent / "recordings"
SHIFT, ENTER, TAB, KP_ENTER = 42, 28, 15, 96
BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# A GT1 ticket as a scanner types it: base45 (with space, $, %, *, +, -, ., /, :).
TICKET = "GT1:6BFOXN*TS0BI$ZDYSHNFL+G6FE:$8J%KIRNC1 -C4.V/ON0*7VKK9"


def evtest(path: Path) -> list[tuple[int, int, int]]:
    """The events of an ``evtest`` capture, as evdev reads them."""
    events = []
    for line in path.read_text().splitlines():
        if m := re.search(r"type (\d+) \(\w+\), code (\d+) \(\w+\), value (\w+)", line):
            kind, code = int(m.group(1)), int(m.group(2))
            events.append((kind, code, int(m.group(3), 16 if kind == 4 else 10)))
        elif "SYN_REPORT" in line:
            events.append((EV_SYN, 0, 0))
    return events


# How a scanner set to each layout types the base45 alphabet: (key code, shift), written out
# from the keyboards themselves, not from the driver's tables.
_LETTERS = dict(zip("QWERTYUIOPASDFGHJKLZXCVBNM", [16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33, 34, 35, 36, 37, 38,
                                                   44, 45, 46, 47, 48, 49, 50], strict=True))
_DIGITS = {d: 2 + (int(d) - 1) % 10 for d in "1234567890"}
TYPING = {
    "us": {**{c: (k, True) for c, k in _LETTERS.items()}, **{d: (k, False) for d, k in _DIGITS.items()},
           " ": (57, False), "$": (5, True), "%": (6, True), "*": (9, True), "+": (13, True), "-": (12, False),
           ".": (52, False), "/": (53, False), ":": (39, True)},
    "de": {**{c: (k, True) for c, k in _LETTERS.items()}, "Y": (44, True), "Z": (21, True),
           **{d: (k, False) for d, k in _DIGITS.items()},
           " ": (57, False), "$": (5, True), "%": (6, True), "*": (27, True), "+": (27, False), "-": (53, False),
           ".": (52, False), "/": (8, True), ":": (52, True)},
}


def typed(text: str, layout: str, suffix: int | None = ENTER) -> list[tuple[int, int, int]]:
    events: list[tuple[int, int, int]] = []
    for char in text:
        code, shift = TYPING[layout][char]
        if shift:
            events.append((EV_KEY, SHIFT, 1))
        events += [(EV_KEY, code, 1), (EV_SYN, 0, 0), (EV_KEY, code, 0)]
        if shift:
            events.append((EV_KEY, SHIFT, 0))
        events.append((EV_SYN, 0, 0))
    if suffix is not None:
        events += [(EV_KEY, suffix, 1), (EV_KEY, suffix, 0), (EV_SYN, 0, 0)]
    return events


# --- the key decoder, on recorded and typed streams -------------------------------------------


def test_a_recorded_german_scanner_reads_with_the_german_layout_and_not_with_us() -> None:
    events = evtest(RECORDINGS / "de-keyboard-wedge.evtest")
    assert KeyDecoder("de").feed(events) == ["GT1:ZY-+*$%/ @"]
    # The same keys read as US: a scanner set to German on a lane set to US is visibly wrong.
    assert KeyDecoder("us").feed(events) == ["GT1>YZ/]}$%& " + UNKNOWN]


@pytest.mark.parametrize("layout", ["us", "de"])
def test_every_base45_character_and_a_whole_ticket_round_trip(layout: str) -> None:
    decoder = KeyDecoder(layout)
    assert decoder.feed(typed(BASE45, layout)) == [BASE45]
    assert decoder.feed(typed(TICKET, layout) + typed("HELLO", layout)) == [TICKET, "HELLO"]
    assert decoder.unknown_keys == 0


def test_suffixes_caps_lock_repeats_and_overlong_lines() -> None:
    assert KeyDecoder("us", suffix="tab").feed(typed("AB", "us", suffix=TAB)) == ["AB"]
    assert KeyDecoder("us").feed(typed("AB", "us", suffix=KP_ENTER)) == ["AB"], "the keypad's Enter too"
    none = KeyDecoder("us", suffix="none")
    assert none.feed(typed("AB", "us", suffix=None)) == [] and none.take_partial() == "AB"
    caps = [(EV_KEY, 58, 1), (EV_KEY, 58, 0), (EV_KEY, 30, 1), (EV_KEY, 30, 0), (EV_KEY, 2, 1), (EV_KEY, 2, 0),
            (EV_KEY, SHIFT, 1), (EV_KEY, 30, 1), (EV_KEY, 30, 0), (EV_KEY, SHIFT, 0), (EV_KEY, ENTER, 1)]
    assert KeyDecoder("us").feed(caps) == ["A1a"], "Caps Lock turns letters only; Shift turns them back"
    repeat = [(EV_KEY, 30, 1), (EV_KEY, 30, 2), (EV_KEY, 30, 2), (EV_KEY, 30, 0), (EV_KEY, ENTER, 1)]
    assert KeyDecoder("us").feed(repeat) == ["aaa"], "auto-repeat types, as on a console"
    short = KeyDecoder("us", max_line=16)
    assert short.feed(typed("A" * 40, "us") + typed("OK", "us")) == ["OK"] and short.overlong == 1


def test_keys_outside_the_layout_damage_the_line_visibly() -> None:
    ctrl = [(EV_KEY, 29, 1), (EV_KEY, 34, 1), (EV_KEY, 34, 0), (EV_KEY, 29, 0)]  # Ctrl+G: not a character
    f1 = [(EV_KEY, 59, 1), (EV_KEY, 59, 0)]
    decoder = KeyDecoder("us")
    assert decoder.feed(typed("AB", "us", suffix=None) + ctrl + f1 + typed("C", "us")) == ["AB" + UNKNOWN * 2 + "C"]
    assert decoder.unknown_keys == 2


# --- the reader thread: grab, lines, silence, unplug and replug -------------------------------


class ReplayedDevice:
    """An input device whose events come through a pipe, as evdev's ``InputDevice`` hands them
    out: ``fd`` for select, ``read()`` yielding events, ``grab``; unplugged, ``read`` fails with
    ENODEV as the kernel's evdev does."""

    EVENT = struct.Struct("llHHi")

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        self.name = "Replayed Scanner"
        self.grabbed = False
        self.gone = False
        self._buffer = b""

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def send(self, events: list[tuple[int, int, int]]) -> None:
        os.write(self._w, b"".join(self.EVENT.pack(0, 0, *event) for event in events))

    def read(self) -> Any:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        self._buffer += os.read(self.fd, 4096)
        whole = len(self._buffer) - len(self._buffer) % self.EVENT.size
        chunk, self._buffer = self._buffer[:whole], self._buffer[whole:]
        for _s, _us, kind, code, value in self.EVENT.iter_unpack(chunk):
            yield SimpleNamespace(type=kind, code=code, value=value)

    def unplug(self) -> None:
        self.gone = True
        os.write(self._w, b"\0")  # select wakes up, as it does for a vanished device

    def close(self) -> None:
        for fd in (self.fd, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class Socket:
    """The USB socket: what ``open`` finds at the device path."""

    def __init__(self) -> None:
        self.device: ReplayedDevice | None = None
        self.opened: list[ReplayedDevice] = []

    def plug(self) -> ReplayedDevice:
        self.device = ReplayedDevice()
        return self.device

    def open(self, path: str) -> ReplayedDevice:
        if self.device is None or self.device.gone:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.opened.append(self.device)
        return self.device


@pytest.fixture
def hid() -> Any:
    made: list[HidScanner] = []

    def make(**options: Any) -> tuple[Socket, HidScanner, queue.Queue[str]]:
        socket = Socket()
        lines: queue.Queue[str] = queue.Queue()
        scanner = HidScanner("/dev/gate-scanner-hid", lines.put, open_device=socket.open, reconnect_interval=0.02, **options)
        made.append(scanner)
        return socket, scanner, lines

    yield make
    for scanner in made:
        scanner.stop()


def test_the_reader_grabs_the_scanner_and_hands_over_each_code(hid: Any) -> None:
    socket, scanner, lines = hid(layout="de")
    device = socket.plug()
    scanner.start()
    assert scanner.connected.wait(5)
    assert device.grabbed and scanner.grabbed, "grabbed: no keystroke reaches a console"
    device.send(typed(TICKET, "de"))
    assert lines.get(timeout=5) == TICKET
    device.send(evtest(RECORDINGS / "de-keyboard-wedge.evtest"))
    assert lines.get(timeout=5) == "GT1:ZY-+*$%/ @"


def test_without_a_suffix_silence_ends_the_code(hid: Any) -> None:
    socket, scanner, lines = hid(suffix="none", line_timeout=0.05)
    device = socket.plug()
    scanner.start()
    assert scanner.connected.wait(5)
    device.send(typed("GT1:ABC", "us", suffix=None))
    assert lines.get(timeout=5) == "GT1:ABC"


def test_a_scanner_unplugged_and_plugged_in_again_reads_again(hid: Any) -> None:
    socket, scanner, lines = hid()
    first = socket.plug()
    scanner.start()
    assert scanner.connected.wait(5)
    first.send(typed("ONE", "us"))
    assert lines.get(timeout=5) == "ONE"
    first.unplug()
    wait_until(lambda: not scanner.connected.is_set())
    second = socket.plug()
    wait_until(scanner.connected.is_set)
    assert second.grabbed
    second.send(typed("TWO", "us"))
    assert lines.get(timeout=5) == "TWO"
    assert scanner.lines_read == 2


# --- config ----------------------------------------------------------------------------------


def test_scanner_kind_and_its_own_keys(config_data: dict) -> None:
    config_data["scanner"] = {"kind": "hid", "layout": "de", "suffix": "tab"}
    scanner = config_module.parse(config_data).scanner
    assert (scanner.kind, scanner.device, scanner.layout, scanner.suffix) == ("hid", "/dev/gate-scanner-hid", "de", "tab")
    config_data["scanner"] = {"kind": "hid", "baudrate": 9600, "layout": "dvorak"}
    with pytest.raises(ConfigError) as error:
        config_module.parse(config_data)
    assert 'scanner.baudrate: only for kind = "serial"' in str(error.value) and "scanner.layout: must be one of us, de" in str(error.value)
    config_data["scanner"] = {"port": "/dev/ttyACM0", "layout": "de"}
    with pytest.raises(ConfigError, match='scanner.layout: only for kind = "hid"'):
        config_module.parse(config_data)


# --- a real kernel keyboard (uinput) ---------------------------------------------------------

uinput = pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="no writable /dev/uinput here (a container)")


@uinput
def test_a_virtual_keyboard_is_grabbed_and_read_through_evdev() -> None:
    evdev = pytest.importorskip("evdev")
    keys = sorted({code for code, _shift in TYPING["us"].values()} | {SHIFT, ENTER})
    with evdev.UInput({evdev.ecodes.EV_KEY: keys}, name="gate-test-scanner") as keyboard:
        lines: queue.Queue[str] = queue.Queue()
        scanner = HidScanner(keyboard.device.path, lines.put, reconnect_interval=0.05)
        scanner.start()
        try:
            assert scanner.connected.wait(5)
            other = evdev.InputDevice(keyboard.device.path)
            with pytest.raises(OSError):
                other.grab()  # exclusive: nobody else gets these keystrokes
            other.close()
            for kind, code, value in typed(TICKET, "us"):
                keyboard.write(kind, code, value)
            assert lines.get(timeout=5) == TICKET
        finally:
            scanner.stop()
