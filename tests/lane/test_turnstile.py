"""The turnstile controller on its own: real gpiozero outputs (``drivers.gpio.GpioLane``) on a
``MockFactory``, a clock moved by hand, no threads. Each test reads the pins as a person at the
lane would see them: relays, lights, buzzer, and the history of each pin."""

from __future__ import annotations

from typing import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import GpioLane
from gate.config import GpioConfig, OutputPin
from gate.lane.turnstile import CONFIRMED, FORCED, FREE_EXIT, IGNORED, Pending, TurnstileController, TurnstileSettings
from tests.support.lanes import ManualClock

UNLOCK_IN, UNLOCK_OUT, GREEN, RED, AMBER, BUZZER = 17, 18, 27, 22, 23, 24
WIRING = GpioConfig(
    pin_factory="mock",
    unlock={"in": OutputPin(UNLOCK_IN), "out": OutputPin(UNLOCK_OUT)},
    lights={"green": OutputPin(GREEN), "red": OutputPin(RED), "amber": OutputPin(AMBER)},
    buzzer=OutputPin(BUZZER),
)
PULSE = TurnstileSettings(unlock_mode="pulse", pulse=0.3, passage_timeout=8.0, deny_display=1.5)
LEVEL = TurnstileSettings(unlock_mode="level", pulse=0.3, passage_timeout=8.0, deny_display=1.5)
ADMISSION = object()  # what the loop would hand over (a ledger record); opaque to the controller


class Rig:
    def __init__(self, factory: MockFactory, lane: GpioLane, clock: ManualClock) -> None:
        self.factory = factory
        self.lane = lane
        self.clock = clock

    def make(self, settings: TurnstileSettings = PULSE) -> TurnstileController:
        turnstile = TurnstileController(self.lane, settings, self.clock)
        turnstile.start()
        return turnstile

    def on(self, pin: int) -> bool:
        return bool(self.factory.pin(pin).state)

    def history(self, pin: int) -> list[bool]:
        """Every state the pin went through, the initial one first (gpiozero records changes
        only). Compared whole, unlike ``MockPin.assert_states``, which stops at the shorter list."""
        return [bool(s.state) for s in self.factory.pin(pin).states]

    def lit(self) -> set[str]:
        return {name for name, pin in (("green", GREEN), ("red", RED), ("amber", AMBER)) if self.on(pin)}

    def after(self, turnstile: TurnstileController, seconds: float) -> Pending | None:
        self.clock.advance(seconds)
        return turnstile.tick()


@pytest.fixture
def rig() -> Iterator[Rig]:
    factory = MockFactory()
    lane = GpioLane(WIRING, pin_factory=factory)
    yield Rig(factory, lane, ManualClock())
    lane.close()
    factory.close()


def test_start_releases_every_relay_silences_the_buzzer_and_shows_idle(rig: Rig) -> None:
    rig.lane.set_unlock("in", True)  # as a previous run might have left them
    rig.lane.set_light("red", True)
    rig.lane.set_buzzer(True)
    rig.make()
    assert not rig.on(UNLOCK_IN) and not rig.on(UNLOCK_OUT)
    assert rig.lit() == set() and not rig.on(BUZZER)


def test_an_admission_energizes_its_relay_shows_green_and_beeps_once(rig: Rig) -> None:
    turnstile = rig.make()
    turnstile.open_for("in", ADMISSION)
    assert rig.on(UNLOCK_IN) and not rig.on(UNLOCK_OUT)
    assert rig.lit() == {"green"} and turnstile.busy
    rig.after(turnstile, 0.2)
    assert rig.history(BUZZER) == [False, True, False]


def test_pulse_mode_releases_the_relay_after_the_pulse_and_not_before(rig: Rig) -> None:
    turnstile = rig.make(PULSE)
    turnstile.open_for("in", ADMISSION)
    rig.after(turnstile, 0.29)
    assert rig.on(UNLOCK_IN)
    rig.after(turnstile, 0.02)
    assert rig.history(UNLOCK_IN) == [False, True, False]
    assert rig.lit() == {"green"} and turnstile.busy, "the admission still waits for the passage"


def test_level_mode_holds_the_relay_until_the_passage(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    rig.after(turnstile, 5.0)
    assert rig.on(UNLOCK_IN)
    turnstile.passage("in")
    assert rig.history(UNLOCK_IN) == [False, True, False]


def test_a_confirmed_passage_releases_the_relay_and_shows_idle(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    outcome, admission = turnstile.passage("in")
    assert outcome == CONFIRMED and admission is ADMISSION
    assert not rig.on(UNLOCK_IN) and rig.lit() == set() and not turnstile.busy


def test_no_passage_within_the_timeout_releases_and_hands_back_the_admission(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    assert rig.after(turnstile, 7.9) is None and rig.on(UNLOCK_IN)
    expired = rig.after(turnstile, 0.2)
    assert expired is not None and expired.admission is ADMISSION and expired.direction == "in"
    assert not rig.on(UNLOCK_IN) and rig.lit() == set() and not turnstile.busy
    assert rig.after(turnstile, 10.0) is None, "an admission times out once"


def test_a_passage_without_an_admission_is_forced_and_moves_nothing(rig: Rig) -> None:
    turnstile = rig.make()
    assert turnstile.passage("in") == (FORCED, None)
    assert rig.history(UNLOCK_IN) == [False] and rig.lit() == set()


@pytest.mark.parametrize("exit_rule, outcome", [("free", FREE_EXIT), ("scan", FORCED)])
def test_leaving_without_a_scan_is_a_free_exit_only_where_exits_are_free(rig: Rig, exit_rule: str, outcome: str) -> None:
    turnstile = rig.make(TurnstileSettings(exit=exit_rule))
    assert turnstile.passage("out") == (outcome, None)


def test_a_passage_the_other_way_does_not_use_up_the_waiting_admission(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    assert turnstile.passage("out") == (FREE_EXIT, None)
    assert turnstile.busy and rig.on(UNLOCK_IN)
    assert turnstile.passage("in") == (CONFIRMED, ADMISSION)


def test_a_denial_shows_red_with_a_five_part_beep_then_goes_idle(rig: Rig) -> None:
    turnstile = rig.make()
    turnstile.show_denied()
    assert rig.lit() == {"red"} and not rig.on(UNLOCK_IN)
    rig.after(turnstile, 0.5)
    assert rig.history(BUZZER) == [False, True, False, True, False, True, False]
    rig.after(turnstile, 0.9)
    assert rig.lit() == {"red"}, "red stays for deny_display"
    rig.after(turnstile, 0.2)
    assert rig.lit() == set()


def test_a_stale_denial_timer_does_not_turn_off_a_later_admissions_green(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.show_denied()
    rig.after(turnstile, 1.0)
    turnstile.open_for("in", ADMISSION)
    rig.after(turnstile, 1.0)  # past the denial's deny_display
    assert rig.lit() == {"green"} and rig.on(UNLOCK_IN)


def test_an_admission_right_after_a_denial_beeps_once_not_with_the_denial_s_tail(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.show_denied()
    rig.after(turnstile, 0.1)  # the denial's beep is half-way
    before = len(rig.history(BUZZER))
    turnstile.open_for("in", ADMISSION)
    rig.after(turnstile, 1.0)
    assert rig.history(BUZZER)[before:] == [True, False], "one beep for the admission, nothing of the denial's"


def test_a_scan_refused_during_a_fire_alarm_keeps_showing_the_way_out(rig: Rig) -> None:
    turnstile = rig.make()
    turnstile.set_emergency(True)
    buzzer = rig.history(BUZZER)
    turnstile.show_denied()
    assert rig.lit() == {"green", "amber"} and rig.history(BUZZER) == buzzer


def test_a_fire_alarm_releases_everything_shows_the_way_out_and_hands_back_the_admission(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    interrupted = turnstile.set_emergency(True)
    assert interrupted is not None and interrupted.admission is ADMISSION
    assert not rig.on(UNLOCK_IN) and not rig.on(UNLOCK_OUT) and not rig.on(BUZZER)
    assert rig.lit() == {"green", "amber"} and not turnstile.busy
    assert turnstile.passage("in") == (IGNORED, None)
    assert turnstile.set_emergency(True) is None, "an alarm already on changes nothing"


def test_a_fire_alarm_cuts_a_denial_short_and_nothing_scheduled_before_it_runs(rig: Rig) -> None:
    turnstile = rig.make(PULSE)
    turnstile.open_for("in", ADMISSION)
    turnstile.show_denied()  # someone else scanned meanwhile: busy
    turnstile.set_emergency(True)
    buzzer = rig.history(BUZZER)
    assert buzzer[-1] is False
    rig.after(turnstile, 30.0)
    assert rig.history(BUZZER) == buzzer, "the denial's beep does not go on through the alarm"
    assert rig.lit() == {"green", "amber"} and not rig.on(UNLOCK_IN)


@pytest.mark.parametrize("mode, relays, lights", [("normal", False, set()), ("free", True, {"green"}), ("locked", False, {"red"})])
def test_the_end_of_a_fire_alarm_restores_the_mode(rig: Rig, mode: str, relays: bool, lights: set[str]) -> None:
    turnstile = rig.make()
    turnstile.set_mode(mode)
    turnstile.set_emergency(True)
    assert turnstile.set_emergency(False) is None
    assert rig.on(UNLOCK_IN) is relays and rig.on(UNLOCK_OUT) is relays
    assert rig.lit() == lights and turnstile.mode == mode


def test_free_mode_energizes_every_unlock_relay_shows_green_and_ignores_passages(rig: Rig) -> None:
    turnstile = rig.make()
    turnstile.set_mode("free")
    assert rig.on(UNLOCK_IN) and rig.on(UNLOCK_OUT) and rig.lit() == {"green"}
    assert turnstile.passage("in") == (IGNORED, None)
    rig.after(turnstile, 60.0)
    assert rig.on(UNLOCK_IN) and rig.on(UNLOCK_OUT)


def test_a_pulse_ending_in_free_mode_keeps_the_relay_open(rig: Rig) -> None:
    turnstile = rig.make(PULSE)
    turnstile.open_for("in", ADMISSION)
    turnstile.set_mode("free")
    rig.after(turnstile, 1.0)
    assert rig.on(UNLOCK_IN)


def test_locked_mode_shows_red_and_releases_the_relays(rig: Rig) -> None:
    turnstile = rig.make()
    turnstile.set_mode("free")
    turnstile.set_mode("locked")
    assert not rig.on(UNLOCK_IN) and not rig.on(UNLOCK_OUT) and rig.lit() == {"red"}


@pytest.mark.parametrize("mode", ["free", "locked"])
def test_leaving_normal_mode_hands_back_the_waiting_admission(rig: Rig, mode: str) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    interrupted = turnstile.set_mode(mode)
    assert interrupted is not None and interrupted.admission is ADMISSION and not turnstile.busy


def test_an_unknown_mode_is_refused_and_changes_nothing(rig: Rig) -> None:
    turnstile = rig.make()
    with pytest.raises(ValueError):
        turnstile.set_mode("party")
    assert turnstile.mode == "normal" and rig.history(UNLOCK_IN) == [False]


def test_setting_normal_mode_again_does_not_cut_off_the_person_passing(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    assert turnstile.set_mode("normal") is None
    assert turnstile.busy
    assert rig.on(UNLOCK_IN) and rig.lit() == {"green"}


def test_safe_releases_the_relays_lights_red_and_silences_the_buzzer(rig: Rig) -> None:
    turnstile = rig.make(LEVEL)
    turnstile.open_for("in", ADMISSION)
    assert rig.on(BUZZER)
    turnstile.safe()
    assert not rig.on(UNLOCK_IN) and not rig.on(UNLOCK_OUT) and not rig.on(BUZZER)
    assert rig.lit() == {"red"} and not turnstile.busy
    assert rig.after(turnstile, 30.0) is None
    assert rig.lit() == {"red"} and not rig.on(BUZZER) and not rig.on(UNLOCK_IN), "no timer runs after safe()"


def test_opening_a_direction_without_a_relay_raises_and_moves_nothing(rig: Rig) -> None:
    turnstile = rig.make(TurnstileSettings(directions=("in",)))
    with pytest.raises(ValueError):
        turnstile.open_for("out", ADMISSION)
    assert not turnstile.busy and rig.lit() == set() and rig.history(BUZZER) == [False]


def test_next_deadline_is_the_earliest_timer_or_the_passage_timeout(rig: Rig) -> None:
    turnstile = rig.make(PULSE)
    t0 = rig.clock.monotonic()
    assert turnstile.next_deadline() is None
    turnstile.open_for("in", ADMISSION)
    assert turnstile.next_deadline() == pytest.approx(t0 + 0.12)  # the beep ends
    rig.after(turnstile, 0.15)
    assert turnstile.next_deadline() == pytest.approx(t0 + 0.3)  # the pulse ends
    rig.after(turnstile, 0.2)
    assert turnstile.next_deadline() == pytest.approx(t0 + 8.0)  # the passage times out
    turnstile.passage("in")
    assert turnstile.next_deadline() is None
