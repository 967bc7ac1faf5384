"""The lane's relays, LEDs, buzzer and contacts on GPIO, through gpiozero.

The pin factory decides where the pins are: lgpio on a Raspberry Pi (on the chip that
``pi_chip`` finds) or a ``MockFactory`` in the simulator and the tests. Nothing else here knows
which.

Outputs never float. gpiozero's ``GPIODevice.close()`` hands its pin to ``Pin.close()``, and
``LGPIOPin.close()`` re-claims the line as an *input without pull* (``MockPin.close()`` does the
same; RPi.GPIO's ``cleanup()`` too), and gpiozero closes every device of its default factory at
exit. A relay input or the red LED then floats after every stop. ``SafeOutput`` drives its safe
level when closed and keeps the line as an output; the Raspberry Pi OS kernel keeps a released
output at its level after the process exits (``dtparam=strict_gpiod`` would return it to an
input). Between power-on and the lane's start, the firmware's ``gpio=`` lines in config.txt hold
the same levels (``boot_lines``, written by scripts/install-pi.sh); while nothing drives them at
all (power-on reset, a Pi without the block) only the wiring's pull resistors decide
(docs/technicians.md).
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import struct
from typing import Any, Callable, Mapping, Protocol

from gpiozero import DigitalInputDevice, OutputDevice

log = logging.getLogger(__name__)

# The Raspberry Pi's own GPIO controller, by the label its kernel driver gives the chip: the
# 40-pin header's BCM 0-27 are lines 0-27 of this chip. Pi 5: the RP1 south bridge (gpiochip0 on
# kernels from 6.6.45 on, gpiochip4 before; gpiozero 2.0.1 opens gpiochip4 whenever it exists,
# which on the newer kernels is only Raspberry Pi OS's compatibility link, gpiozero issue 1166).
PI_GPIO_LABELS = {"pinctrl-rp1": "Raspberry Pi 5", "pinctrl-bcm2711": "Raspberry Pi 4",
                  "pinctrl-bcm2835": "Raspberry Pi 3 or earlier"}
_GPIO_GET_CHIPINFO_IOCTL = 0x8044B401  # _IOR(0xB4, 0x01, struct gpiochip_info {char name[32], label[32]; u32 lines})


class ChipNotFound(OSError):
    """No GPIO chip of a Raspberry Pi here, or the configured one is missing."""


def chip_label(path: str) -> str:
    """The kernel's label of a GPIO character device (``gpiodetect`` prints it in brackets)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = fcntl.ioctl(fd, _GPIO_GET_CHIPINFO_IOCTL, bytes(68))
    finally:
        os.close(fd)
    _name, label, _lines = struct.unpack("32s32sI", info)
    return label.split(b"\0", 1)[0].decode("ascii", "replace")


def gpio_chips(dev: str = "/dev") -> dict[int, str]:
    """Every real GPIO chip (not a symlink: Pi 5's compatibility ``gpiochip4`` is one) and its
    label; a chip this user cannot open is listed with the label ``""``."""
    chips: dict[int, str] = {}
    for path in glob.glob(os.path.join(dev, "gpiochip*")):
        number = path.rsplit("gpiochip", 1)[1]
        if not number.isdigit() or os.path.islink(path):
            continue
        try:
            chips[int(number)] = chip_label(path)
        except OSError:
            chips[int(number)] = ""
    return chips


def pi_chip(setting: int | None, chips: Callable[[], Mapping[int, str]] | None = None) -> tuple[int, str]:
    """The chip the lane opens and what it is: ``setting`` (``[gpio] chip``) when given, else
    the one whose label is the Pi's own GPIO controller (gpiochip0 on a Pi 4, and on a Pi 5
    whichever number the RP1's chip has on this kernel)."""
    found = (chips or gpio_chips)()
    if setting is not None:
        if setting not in found:
            raise ChipNotFound(f"/dev/gpiochip{setting} ([gpio] chip) does not exist; chips here: {_chip_list(found)}")
        return setting, found[setting]
    for number, label in sorted(found.items()):
        if label in PI_GPIO_LABELS:
            return number, label
    raise ChipNotFound(f"no Raspberry Pi GPIO controller among the chips here ({_chip_list(found)}); "
                       "set [gpio] chip to the number of the header's chip (gpiodetect names them)")


def _chip_list(found: Mapping[int, str]) -> str:
    return ", ".join(f"gpiochip{n} [{label or 'not readable'}]" for n, label in sorted(found.items())) or "none"


def lgpio_factory(chip: int) -> Any:
    """gpiozero's lgpio pin factory on ``chip``. Never closed by the lane: ``PiFactory.close()``
    closes every pin it made, which would turn the outputs back into floating inputs; the
    process's exit releases the chip."""
    from gpiozero.pins.lgpio import LGPIOFactory

    return LGPIOFactory(chip=chip)


class OutputSpec(Protocol):
    pin: int
    active_high: bool


class InputSpec(Protocol):
    pin: int
    pull_up: bool
    bounce: float
    normally_closed: bool


class Wiring(Protocol):
    unlock: Mapping[str, OutputSpec]
    lights: Mapping[str, OutputSpec]
    buzzer: OutputSpec | None
    passage: Mapping[str, InputSpec]
    fire_alarm: InputSpec | None
    tamper: InputSpec | None


class SafeOutput(OutputDevice):
    """An output with a safe level (``safe_on``: the red light is on, everything else off) that
    it is driven to, and left driven at, when closed: never released to a floating input."""

    def __init__(self, pin: int, *, active_high: bool, safe_on: bool, pin_factory: Any = None) -> None:
        self.safe_on = safe_on
        super().__init__(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)

    def close(self) -> None:
        """What ``GPIODevice.close()`` does (the reservation goes, the device is closed) except
        ``Pin.close()``, which re-claims the line as an input without pull (see the module)."""
        pin = self.pin
        if pin is None:
            return
        try:
            self.source = None  # SourceMixin: no thread drives it any more
            self.value = self.safe_on
        finally:
            self.pin_factory.release_pins(self, pin.info.name)
            self._pin = None  # closed to gpiozero; the line stays an output at its safe level


class GpioLane:
    """Implements ``gate.lane.hardware.LaneOutputs``; reports inputs to a ``LaneEvents`` once listening."""

    def __init__(self, wiring: Wiring, pin_factory: Any = None) -> None:
        self.wiring = wiring
        self._devices: list[Any] = []

        def output(spec: OutputSpec, safe_on: bool = False) -> SafeOutput:
            device = SafeOutput(spec.pin, active_high=spec.active_high, safe_on=safe_on, pin_factory=pin_factory)
            self._devices.append(device)
            return device

        def contact(spec: InputSpec) -> DigitalInputDevice:
            device = DigitalInputDevice(
                spec.pin, pull_up=spec.pull_up, bounce_time=spec.bounce or None, pin_factory=pin_factory
            )
            self._devices.append(device)
            return device

        self.unlock = {direction: output(spec) for direction, spec in wiring.unlock.items()}
        self.lights = {color: output(spec, color == "red") for color, spec in wiring.lights.items()}
        self.buzzer = output(wiring.buzzer) if wiring.buzzer else None
        self.passage = {direction: contact(spec) for direction, spec in wiring.passage.items()}
        self.fire = contact(wiring.fire_alarm) if wiring.fire_alarm else None
        self.tamper_input = contact(wiring.tamper) if wiring.tamper else None

    def listen(self, events: Any) -> None:
        """Start reporting inputs to ``events`` (a ``gate.lane.hardware.LaneEvents``)."""
        for direction, device in self.passage.items():
            device.when_activated = lambda _d=None, direction=direction: events.passage(direction)
        if self.fire is not None:
            device = self.fire
            device.when_activated = lambda _d=None: events.fire_alarm(self.fire_alarm_active())
            device.when_deactivated = lambda _d=None: events.fire_alarm(self.fire_alarm_active())
        if self.tamper_input is not None:
            self.tamper_input.when_activated = lambda _d=None: events.tamper(True)
            self.tamper_input.when_deactivated = lambda _d=None: events.tamper(False)

    def fire_alarm_active(self) -> bool:
        """A normally-closed loop is in alarm when open, which a cut wire also is."""
        if self.fire is None or self.wiring.fire_alarm is None:
            return False
        closed = self.fire.is_active
        return not closed if self.wiring.fire_alarm.normally_closed else closed

    # --- LaneOutputs -----------------------------------------------------------------------

    def set_unlock(self, direction: str, energized: bool) -> None:
        self.unlock[direction].value = energized

    def set_light(self, color: str, on: bool) -> None:
        light = self.lights.get(color)
        if light is not None:
            light.value = on

    def set_buzzer(self, on: bool) -> None:
        if self.buzzer is not None:
            self.buzzer.value = on

    def safe(self) -> None:
        for name, device in [*self.unlock.items(), *self.lights.items(), ("buzzer", self.buzzer)]:
            if device is None:
                continue
            try:
                device.value = device.safe_on
            except Exception:  # a closed or broken pin must not stop the others falling safe
                log.exception("could not set output to safe state output=%s", name)

    def close(self) -> None:
        """Inputs are released; outputs stay driven at their safe level (``SafeOutput``)."""
        for device in self._devices:
            try:
                device.close()
            except Exception:
                log.exception("closing GPIO device failed")


def boot_lines(wiring: Wiring) -> list[str]:
    """The Raspberry Pi firmware's ``gpio=`` lines (config.txt) that hold every output at its
    safe level from early boot until the lane drives it: ``op`` output, ``dh``/``dl`` drive
    high/low, at the *electrical* level of the safe state (an active-low relay released is
    high). Inputs get their pull (``pu``/``pd``) so that a contact reads the same before the
    lane starts. One line per pin, in BCM order."""
    levels: dict[int, str] = {}
    outputs = [*wiring.unlock.values(), *[spec for color, spec in wiring.lights.items() if color != "red"]]
    for spec in outputs + ([wiring.buzzer] if wiring.buzzer else []):
        levels[spec.pin] = "op,dh" if not spec.active_high else "op,dl"
    red = wiring.lights.get("red")
    if red is not None:
        levels[red.pin] = "op,dh" if red.active_high else "op,dl"
    inputs = [*wiring.passage.values(), *[s for s in (wiring.fire_alarm, wiring.tamper) if s is not None]]
    for contact in inputs:
        levels[contact.pin] = "ip,pu" if contact.pull_up else "ip,pd"
    return [f"gpio={pin}={levels[pin]}" for pin in sorted(levels)]
