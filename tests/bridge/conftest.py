"""Fixtures of the bridge's tests: one migrated, seeded pretix per test run (copied per test),
a pretix server per test, a venue (broker, lanes, the bridge process)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hwsim.broker import mosquitto_binary

from tests.bridge.helpers import Venue
from tests.support.lanes import Lane
from tests.support.pretix import PretixServer, PretixTemplate, PretixUnavailable, ensure_pretix

# Tickets sold before the tests start: democon (signed secrets) has enough for the 200-admission test.
SEED = {"organizer": "venue", "devices": 1,
        "events": [{"slug": "democon", "secrets": "pretix_sig1", "orders": 230},
                   {"slug": "randcon", "secrets": "random", "orders": 5}]}
TIMINGS = Path(__file__).resolve().parents[2] / ".cache" / "pretix" / "last-run-timings.json"


@pytest.fixture(scope="session")
def pretix_template(tmp_path_factory: pytest.TempPathFactory) -> PretixTemplate:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (scripts/test installs it)")
    started = time.monotonic()
    try:
        python = ensure_pretix()
    except PretixUnavailable as exc:
        pytest.skip(f"the real pretix is not available: {exc}")
    installed = time.monotonic() - started
    template = PretixTemplate(python, tmp_path_factory.mktemp("pretix-template"), SEED)
    TIMINGS.write_text(json.dumps({"install_or_check_s": round(installed, 1), "migrate_s": round(template.migrate_seconds, 1),
                                   "seed_s": round(template.seed_seconds, 1)}))
    return template


@pytest.fixture
def pretix(pretix_template: PretixTemplate, tmp_path: Path) -> Iterator[PretixServer]:
    server = PretixServer(pretix_template, tmp_path / "pretix")
    yield server
    server.close()


@pytest.fixture
def make_venue(tmp_path: Path, issuer: Any, start_lane: Callable[..., Lane]) -> Iterator[Callable[[list[str]], Venue]]:
    made: list[Venue] = []

    def make(gates: list[str]) -> Venue:
        made.append(Venue(tmp_path, issuer, start_lane, gates))
        return made[-1]

    yield make
    for venue in made:
        venue.close()
