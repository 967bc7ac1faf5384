"""Fixtures: a real simulated lane (the real daemon on gpiozero MockFactory pins, the real
serial driver reading a pseudo-terminal, a real SQLite file), keys, tickets, a real mosquitto.
Helpers live in tests/support (tests import them from there, never from here)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hwsim.scanner import SimulatedScanner
from nacl.signing import SigningKey

from gate import config as gate_config
from gate.daemon import Daemon
from tests.support.lanes import Lane, Tickets, Verifier, base_config


@pytest.fixture(scope="session")
def issuer() -> SigningKey:
    return SigningKey(b"\x01" * 32)


@pytest.fixture(scope="session")
def holder() -> SigningKey:
    return SigningKey(b"\x02" * 32)


@pytest.fixture
def tickets(issuer: SigningKey) -> Tickets:
    return Tickets(issuer)


@pytest.fixture
def config_data(tmp_path: Path, issuer: SigningKey) -> dict[str, Any]:
    return base_config(tmp_path, issuer)


@pytest.fixture
def start_lane(tmp_path: Path) -> Iterator[Callable[..., Lane]]:
    started: list[Lane] = []

    def start(data: dict[str, Any], clock: Any = None) -> Lane:
        data = copy.deepcopy(data)
        scanner = SimulatedScanner(data["scanner"]["port"]) if "scanner" in data else None
        daemon = Daemon(gate_config.parse(data, "test.toml"), clock=clock)
        daemon.start()
        lane = Lane(daemon, scanner)
        started.append(lane)
        if daemon.readers.scanner is not None:
            assert daemon.readers.scanner.connected.wait(5), "scanner driver did not open the pty"
        return lane

    yield start
    for lane in started:
        if not lane.stopped:
            lane.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A real mosquitto on a free port, for this test alone."""
    from hwsim.broker import Mosquitto

    broker = Mosquitto(tmp_path / "broker")
    yield broker
    broker.stop()


@pytest.fixture
def lane(start_lane: Callable[..., Lane], config_data: dict[str, Any]) -> Lane:
    return start_lane(config_data)


@pytest.fixture
def verifier(tmp_path: Path) -> Callable[..., Verifier]:
    made: list[Verifier] = []

    def make(documents: list[dict[str, Any]], **kwargs: Any) -> Verifier:
        made.append(Verifier(tmp_path / f"verify-{len(made)}.db", documents, **kwargs))
        return made[-1]

    yield make
    for v in made:
        v.store.close()
