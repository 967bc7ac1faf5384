"""Fixtures of the dashboard tests: a venue broker with the shipped ACL, lanes on it, the
dashboard, and one headless Chromium per module (starting one costs about a second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hwsim.broker import mosquitto_binary
from nacl.signing import SigningKey

from tests.support.dashboard import (
    RunningDashboard,
    browser,
    chromium_paths,
    dashboard_config,
    venue_broker,
)
from tests.support.lanes import Lane, wait_until
from tests.support.venue import gate_config, holds_roster

needs_browser = pytest.mark.skipif(chromium_paths() is None or mosquitto_binary() is None,
                                   reason="chromium, chromium-driver and mosquitto needed (scripts/test installs them)")


class Bus:
    """The venue's broker and every user's password file."""

    def __init__(self, folder: Path, gates: list[str]) -> None:
        self.broker, self.passwords = venue_broker(folder, gates)

    def close(self) -> None:
        self.broker.stop()


@pytest.fixture
def make_bus(tmp_path: Path) -> Iterator[Callable[[list[str]], Bus]]:
    made: list[Bus] = []

    def make(gates: list[str]) -> Bus:
        made.append(Bus(tmp_path / "bus", gates))
        return made[-1]

    yield make
    for bus in made:
        bus.close()


@pytest.fixture
def venue_lane(tmp_path: Path, issuer: SigningKey, start_lane: Callable[..., Lane]) -> Callable[..., Lane]:
    """A lane of the venue on ``bus``, logged in as itself, once it holds the roster."""

    def start(bus: Bus, gate: str, **sync: Any) -> Lane:
        data = gate_config(tmp_path, issuer, gate, bus.broker, password_file=str(bus.passwords[gate]), **sync)
        lane = start_lane(data)
        wait_until(lambda: lane.daemon.sync.connected and holds_roster(lane), 10)
        return lane

    return start


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Callable[..., RunningDashboard]]:
    started: list[RunningDashboard] = []

    def start(bus: Bus, **options: Any) -> RunningDashboard:
        path = dashboard_config(tmp_path / f"dashboard-{len(started)}", bus.broker, bus.passwords, **options)
        started.append(RunningDashboard(path))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    driver = browser()
    yield driver
    driver.quit()


@pytest.fixture
def page(chrome: Any) -> Iterator[Any]:
    """The module's browser, its cookies cleared after each test (a new session each time)."""
    yield chrome
    chrome.delete_all_cookies()
