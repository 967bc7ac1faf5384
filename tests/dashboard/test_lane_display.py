"""The screen at the lane, in a real headless Chromium: the lane's page on loopback, fed by the
decision loop's listeners exactly as .dashboard-wiring.patch wires it into gate/daemon.py."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hwsim.broker import free_port
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gate.field.lane_display import DisplayState, LaneDisplay
from gate.lane.loop import SetMode
from tests.dashboard.conftest import needs_browser
from tests.support.dashboard import screenshot
from tests.support.lanes import Lane, Tickets

pytestmark = needs_browser


@dataclass(frozen=True)
class Settings:  # the [display] table (gate.config.DisplayConfig once the wiring patch is applied)
    port: int = field(default_factory=free_port)
    language: str = "en"
    class_colours: dict[str, str] = field(default_factory=lambda: {"vip": "#7b3fa0", "default": "#1f8f4e"})
    refused_seconds: float = 30.0  # long enough to look at; the passage or the next decision replaces it
    welcome_seconds: float = 30.0


@pytest.fixture
def displayed(lane: Lane) -> Iterator[Callable[..., LaneDisplay]]:
    made: list[LaneDisplay] = []

    def start(**settings: Any) -> LaneDisplay:
        display = LaneDisplay(Settings(**settings), lane.daemon.config.gate_id)
        display.start()
        lane.daemon.loop.listeners.append(display.publish)  # the wiring's one line
        made.append(display)
        return display

    yield start
    for display in made:
        display.close()


def screen(driver: Any) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-screen")


def shows(driver: Any, name: str, title: str | None = None, timeout: float = 5.0) -> None:
    WebDriverWait(driver, timeout, poll_frequency=0.01).until(
        lambda d: screen(d) == name and (title is None or d.find_element(By.ID, "title").text == title),
        message=f"the lane's screen never showed {name} {title or ''}")


def open_page(page: Any, display: LaneDisplay) -> None:
    page.get(f"http://127.0.0.1:{display.settings.port}/")
    shows(page, "waiting", "Please scan your ticket")


def test_every_screen_a_guest_sees(lane: Lane, displayed: Any, page: Any, tickets: Tickets) -> None:
    display = displayed()
    open_page(page, display)
    screenshot(page, "lane-waiting")

    display.publish("scan", {"source": "scanner"})  # a reader has a ticket (the loop's optional early event)
    shows(page, "checking", "Checking…")
    screenshot(page, "lane-checking")

    vip = tickets.static(product="vip")
    lane.turnstile.person("in", False)  # let in, but has not walked through yet
    assert lane.present(vip, walks=None)["accepted"]
    shows(page, "welcome", "Welcome!")
    assert page.find_element(By.ID, "ticket-class").text == "VIP"
    WebDriverWait(page, 5, poll_frequency=0.01).until(  # the class's colour, once the 80 ms fade is over
        lambda d: d.find_element(By.TAG_NAME, "body").value_of_css_property("background-color") == "rgba(123, 63, 160, 1)")
    screenshot(page, "lane-welcome")
    shows(page, "waiting", timeout=5)  # no passage within passage_timeout: reverted, the screen goes back

    assert lane.present(tickets.static())["accepted"]
    shows(page, "welcome")
    shows(page, "waiting")  # walked through: ready for the next person
    lane.idle()
    used = tickets.static()
    assert lane.present(used)["accepted"]
    lane.idle()
    assert lane.present(used, walks=None)["reason"] == "already_used"
    shows(page, "refused", "Sorry, no entry")
    assert page.find_element(By.ID, "subtitle").text == "This ticket has already been used."
    screenshot(page, "lane-refused")
    lane.idle()

    lane.daemon.loop.post(SetMode("locked"))
    shows(page, "closed", "Lane closed")
    screenshot(page, "lane-closed")
    lane.daemon.loop.post(SetMode("normal"))
    shows(page, "waiting")

    lane.turnstile.set_fire_alarm(True)
    shows(page, "emergency", "EMERGENCY")
    screenshot(page, "lane-emergency")
    lane.turnstile.set_fire_alarm(False)
    shows(page, "waiting")

    display.close()  # the lane stopped: its page says so by itself
    shows(page, "out_of_order", "Out of order")
    screenshot(page, "lane-out-of-order")


def test_refusals_in_the_venue_language(lane: Lane, displayed: Any, page: Any, tickets: Tickets) -> None:
    display = displayed(language="de")
    page.get(f"http://127.0.0.1:{display.settings.port}/")
    shows(page, "waiting", "Bitte Ticket scannen")
    ticket = tickets.static()
    assert lane.present(ticket)["accepted"]
    lane.idle()
    lane.present(ticket, walks=None)
    shows(page, "refused", "Leider kein Einlass")
    assert page.find_element(By.ID, "subtitle").text == "Dieses Ticket wurde bereits benutzt."


def test_the_page_shows_a_decision_within_100_ms(lane: Lane, displayed: Any, page: Any, tickets: Tickets) -> None:
    """Measured by the page: the decision's time (the loop's listener) to the page drawn."""
    display = displayed()
    open_page(page, display)
    delays = []
    for _ in range(20):
        before = page.find_element(By.TAG_NAME, "body").get_attribute("data-decided-at")
        lane.present("GT1:NOT-A-TICKET", walks=None)  # refused at once: the screen shows this refusal
        WebDriverWait(page, 5, poll_frequency=0.005).until(
            lambda d, before=before: d.find_element(By.TAG_NAME, "body").get_attribute("data-decided-at") not in (None, before))
        assert screen(page) == "refused"
        delays.append(float(page.find_element(By.TAG_NAME, "body").get_attribute("data-delay-ms")))
        lane.idle()
    print(f"\nlane display: decision → page drawn, median {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms "
          f"over {len(delays)} decisions")
    assert max(delays) < 1000  # a sanity bound; the figure itself is in the output (DESIGN §8: tests assert no times)


def test_a_frozen_display_never_holds_up_the_lane(lane: Lane, displayed: Any, tickets: Tickets) -> None:
    display = displayed()
    frozen, release = threading.Event(), threading.Event()
    assert display.server_loop is not None
    display.server_loop.call_soon_threadsafe(lambda: (frozen.set(), release.wait(30)))  # the web server hangs
    assert frozen.wait(5)
    try:
        for _ in range(5):
            assert lane.present(tickets.static())["accepted"]  # decided, let in, walked through as always
            lane.idle()
    finally:
        release.set()


def test_the_display_state_is_pure_and_returns_to_its_base() -> None:
    state = DisplayState("en", {}, refused_seconds=3, welcome_seconds=8)
    state.on_event("decision", {"accepted": False, "reason": "zone_full"}, now=100.0, wall=1795300000.0)
    assert state.view(101.0)["screen"]["subtitle"] == "This area is full."
    assert state.view(101.0)["decided_at"] == 1795300000.0  # the time given, not the clock's
    assert state.view(103.5)["screen"]["screen"] == "waiting"
    state.on_event("hold", {"held": "new database"}, now=104.0, wall=1795300004.0)
    assert state.view(104.0)["screen"]["screen"] == "out_of_order"
    state.on_event("alarm", {"alarm": "fire", "active": True}, now=105.0, wall=1795300005.0)
    state.on_event("decision", {"accepted": False, "reason": "emergency"}, now=105.1, wall=1795300005.1)
    assert state.view(105.2)["screen"]["screen"] == "emergency"
    assert "ticket_key" not in str(state.view(105.2))


wired = pytest.mark.skipif(not hasattr(__import__("gate.config").config.Config, "display"),
                           reason="the [display] wiring (.dashboard-wiring.patch) is not applied to gate/config.py and gate/daemon.py yet")


@wired
def test_a_lane_with_a_display_table_serves_its_screen(start_lane: Callable[..., Lane], config_data: dict[str, Any],
                                                       page: Any, tickets: Tickets) -> None:
    port = free_port()
    config_data["display"] = {"port": port, "language": "en", "colours": {"vip": "#7b3fa0"}}
    lane = start_lane(config_data)
    page.get(f"http://127.0.0.1:{port}/")
    shows(page, "waiting")
    assert lane.present(tickets.static(product="vip"))["accepted"]
    shows(page, "welcome")
    lane.turnstile.set_fire_alarm(True)
    shows(page, "emergency")
    lane.stop()
    shows(page, "out_of_order")
