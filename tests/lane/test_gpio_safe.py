"""Outputs that stay safe without the lane: real gpiozero devices (``drivers.gpio``) on a
MockFactory whose pins record what ``close()`` does to them, config.txt's boot-time ``gpio=``
lines, and the choice of GPIO chip on a Pi 4 and a Pi 5."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.gpio import ChipNotFound, GpioLane, boot_lines, gpio_chips, pi_chip
from gate import config as config_module
from gate.config import GpioConfig, InputPin, OutputPin
from gate.errors import ConfigError

UNLOCK_IN, UNLOCK_OUT, GREEN, RED, BUZZER, PASS_IN, FIRE = 17, 18, 27, 22, 24, 5, 13
# An active-low relay board (the common kind) on both relays; LEDs and buzzer active-high.
WIRING = GpioConfig(
    pin_factory="mock",
    unlock={"in": OutputPin(UNLOCK_IN, active_high=False), "out": OutputPin(UNLOCK_OUT, active_high=False)},
    lights={"green": OutputPin(GREEN), "red": OutputPin(RED)},
    buzzer=OutputPin(BUZZER),
    passage={"in": InputPin(PASS_IN)},
    fire_alarm=InputPin(FIRE, normally_closed=True),
)


class RecordingPin(MockPin):
    """A MockPin that remembers each ``close()``: the function and level the line had then.
    (``MockPin.close()``, like ``LGPIOPin.close()``, turns the line into an input.)"""

    def __init__(self, factory: MockFactory, info: object) -> None:
        super().__init__(factory, info)
        self.closes: list[tuple[str, bool]] = []

    def close(self) -> None:
        self.closes.append((self.function, bool(self.state)))
        super().close()


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory(pin_class=RecordingPin)


def line(factory: MockFactory, number: int) -> tuple[str, bool]:
    """What a meter on the header pin would show: is it driven, and at which level."""
    pin = factory.pin(number)
    return pin.function, bool(pin.state)


def test_outputs_stay_driven_at_their_safe_level_after_the_lane_closes(factory: MockFactory) -> None:
    lane = GpioLane(WIRING, pin_factory=factory)
    lane.set_unlock("in", True)  # a relay pulled in, green on, beeping: then the lane stops
    lane.set_light("green", True)
    lane.set_buzzer(True)
    assert line(factory, UNLOCK_IN) == ("output", False), "active-low: energized is low"
    lane.safe()
    lane.close()
    # Relays released (an active-low input held high), red on, the rest off: all still driven.
    assert line(factory, UNLOCK_IN) == ("output", True)
    assert line(factory, UNLOCK_OUT) == ("output", True)
    assert line(factory, RED) == ("output", True)
    assert line(factory, GREEN) == ("output", False)
    assert line(factory, BUZZER) == ("output", False)
    for number in (UNLOCK_IN, UNLOCK_OUT, GREEN, RED, BUZZER):
        assert factory.pin(number).closes == [], f"GPIO{number} was handed back to the pin (an input without pull)"
    assert factory.pin(PASS_IN).closes, "inputs are released as usual"


def test_closing_drives_the_safe_level_even_without_safe_first(factory: MockFactory) -> None:
    """A crash path that never called ``safe()``: closing alone leaves nothing energized."""
    lane = GpioLane(WIRING, pin_factory=factory)
    lane.set_unlock("out", True)
    lane.close()
    assert line(factory, UNLOCK_OUT) == ("output", True) and line(factory, RED) == ("output", True)


def test_the_lane_opens_again_on_the_same_pins_after_closing(factory: MockFactory) -> None:
    """``gate safe`` after a stop, ``doctor --click`` before a start: the pins are free again."""
    GpioLane(WIRING, pin_factory=factory).close()
    again = GpioLane(WIRING, pin_factory=factory)
    again.set_unlock("in", True)
    assert line(factory, UNLOCK_IN) == ("output", False)
    again.close()
    assert line(factory, UNLOCK_IN) == ("output", True)


def test_boot_lines_hold_the_safe_levels_electrically() -> None:
    assert boot_lines(WIRING) == [
        "gpio=5=ip,pu",  # the PASS contact to ground reads open before the lane starts
        "gpio=13=ip,pu",
        "gpio=17=op,dh",  # active-low relays released: driven high
        "gpio=18=op,dh",
        "gpio=22=op,dh",  # red on
        "gpio=24=op,dl",
        "gpio=27=op,dl",
    ]
    active_high = GpioConfig(unlock={"in": OutputPin(17)}, lights={"red": OutputPin(22, active_high=False)},
                             passage={"in": InputPin(5, pull_up=False)})
    assert boot_lines(active_high) == ["gpio=5=ip,pd", "gpio=17=op,dl", "gpio=22=op,dl"]


def test_the_example_config_gives_boot_lines_for_every_output() -> None:
    gpio = config_module.load_gpio(Path(__file__).resolve().parents[2] / "config" / "gate.example.toml")
    pins = {int(text.split("=")[1]) for text in boot_lines(gpio)}
    assert {pin for _name, pin in config_module.named_pins(gpio)} == pins


# --- which chip ----------------------------------------------------------------------------

PI4 = {0: "pinctrl-bcm2711", 1: "raspberrypi-exp-gpio"}
PI5_NEW_KERNEL = {0: "pinctrl-rp1", 10: "gpio-brcmstb@107d508500", 11: "gpio-brcmstb@107d508500", 12: "gpio-brcmstb@107d517c00", 13: "gpio-brcmstb@107d517c20"}
PI5_OLD_KERNEL = {0: "gpio-brcmstb@107d508500", 1: "gpio-brcmstb@107d508500", 2: "gpio-brcmstb@107d517c00", 3: "gpio-brcmstb@107d517c20", 4: "pinctrl-rp1"}


@pytest.mark.parametrize("chips, expected", [(PI4, 0), (PI5_NEW_KERNEL, 0), (PI5_OLD_KERNEL, 4)])
def test_auto_opens_the_header_s_chip_on_a_pi_4_and_a_pi_5(chips: dict[int, str], expected: int) -> None:
    assert pi_chip(None, lambda: chips)[0] == expected


def test_a_configured_chip_must_exist_and_a_machine_without_a_pi_chip_says_so() -> None:
    assert pi_chip(10, lambda: PI5_NEW_KERNEL) == (10, "gpio-brcmstb@107d508500")
    with pytest.raises(ChipNotFound, match=r"/dev/gpiochip4 \(\[gpio\] chip\) does not exist.*gpiochip0 \[pinctrl-rp1\]"):
        pi_chip(4, lambda: PI5_NEW_KERNEL)
    with pytest.raises(ChipNotFound, match="no Raspberry Pi GPIO controller"):
        pi_chip(None, lambda: {0: "INT34C5:00"})


def test_the_pi_5_compatibility_link_is_not_a_chip(tmp_path: Path) -> None:
    (tmp_path / "gpiochip0").write_bytes(b"")  # not a GPIO device here: its label cannot be read
    (tmp_path / "gpiochip4").symlink_to("gpiochip0")
    assert gpio_chips(str(tmp_path)) == {0: ""}


def test_gpio_chip_setting_is_auto_or_a_number(config_data: dict) -> None:
    assert config_module.parse(config_data).gpio.chip is None
    config_data["gpio"]["chip"] = 4
    assert config_module.parse(config_data).gpio.chip == 4
    config_data["gpio"]["chip"] = "/dev/gpiochip4"
    with pytest.raises(ConfigError, match=r"gpio.chip: \"auto\" or the number N"):
        config_module.parse(config_data)
