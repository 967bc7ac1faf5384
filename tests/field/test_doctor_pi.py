"""``gate doctor`` on a Raspberry Pi's own questions: the GPIO chip the lane will really open
(a Pi 5 has several chips, and a configured number that is not there) and config.txt's
boot-time safe levels. No Pi here: the chips' labels are given, the rest is real."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import drivers.gpio
from drivers.gpio import boot_lines
from gate import config as config_module
from gate.field.doctor import FAIL, OK, SKIP, WARN, Doctor

PI5 = {0: "pinctrl-rp1", 10: "gpio-brcmstb@107d508500", 11: "gpio-brcmstb@107d517c00"}


@pytest.fixture
def pi_doctor(config_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A doctor for a lane on a Pi's pins (not the simulator's), whose chips are ``PI5``."""

    def make(chips: dict[int, str] = PI5, **gpio: Any) -> Doctor:
        config_data["gpio"].update(gpio)
        config_data["gpio"]["pin_factory"] = "default"
        config_data.pop("simulator", None)
        config = config_module.parse(config_data)
        monkeypatch.setattr(drivers.gpio, "gpio_chips", lambda dev="/dev": dict(chips))
        dev = tmp_path / "dev"
        dev.mkdir(exist_ok=True)
        for number in chips:
            (dev / f"gpiochip{number}").touch()
        doctor = Doctor(config)
        doctor.dev = str(dev)
        doctor.lane = {"pid": 1}  # the running lane holds the pins: doctor does not claim them
        doctor.boot_configs = (str(tmp_path / "boot/firmware/config.txt"),)
        return doctor

    return make


def test_doctor_checks_the_chip_the_lane_opens(pi_doctor: Any) -> None:
    check = pi_doctor().check_gpio()
    assert check.result == OK and "gpiochip0 [pinctrl-rp1] (Raspberry Pi 5)" in check.detail
    # A chip number from a howto for older kernels: gpiochip4 is not there, although others are.
    check = pi_doctor(chip=4).check_gpio()
    assert check.result == FAIL and "/dev/gpiochip4 ([gpio] chip) does not exist" in check.detail
    check = pi_doctor(chip=10).check_gpio()
    assert check.result == WARN and "not a Raspberry Pi's GPIO controller" in check.detail


def test_doctor_says_when_no_chip_is_a_pi_s(pi_doctor: Any) -> None:
    check = pi_doctor(chips={0: "INT34C5:00"}).check_gpio()
    assert check.result == FAIL and "no Raspberry Pi GPIO controller" in check.detail


def test_doctor_compares_config_txt_with_the_gpio_table(pi_doctor: Any, tmp_path: Path) -> None:
    doctor = pi_doctor()
    assert doctor.check_boot_pins().result == SKIP
    txt = tmp_path / "boot/firmware/config.txt"
    txt.parent.mkdir(parents=True)
    txt.write_text("dtparam=audio=on\n")
    check = doctor.check_boot_pins()
    assert check.result == WARN and "only the wiring's pull resistors" in check.detail
    lines = boot_lines(doctor.config.gpio)
    txt.write_text("dtparam=audio=on\n# >>> gate: the outputs' safe levels\n[all]\n" + "\n".join(lines) + "\n# <<< gate\n")
    check = doctor.check_boot_pins()
    assert check.result == OK, check
    relay = doctor.config.gpio.unlock["in"]
    active_low = dataclasses.replace(doctor.config.gpio, unlock={"in": dataclasses.replace(relay, active_high=False)})
    doctor.config = dataclasses.replace(doctor.config, gpio=active_low)
    check = doctor.check_boot_pins()
    assert check.result == WARN and f"gpio={relay.pin}=op,dh" in check.detail
