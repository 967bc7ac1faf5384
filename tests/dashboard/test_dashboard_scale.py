"""A venue of 100 lanes on the dashboard, in Chromium: every lane's row with its counts, and how
long the page takes (printed: DESIGN §8 keeps time budgets out of assertions)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from hwsim.broker import Mosquitto, Watcher
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gate.store.ledger import Record
from gate.sync import messages as bus
from gate.trust import signed
from gate.trust.records import sealer
from tests.dashboard.conftest import needs_browser
from tests.support.dashboard import RunningDashboard, dashboard_config, log_in
from tests.support.venue import ADMIN, KEYS, ROOT, VENUE

pytestmark = needs_browser
LANES = 100
ZONES = ("north", "south", "east", "west")


def status(gate: str) -> bytes:
    return bus.encode_status(gate, "online", mode="normal", emergency=False, clock={"synchronized": True},
                             counters={"accepted": 10}, version="0.1.0", venue=VENUE, outbox=0, conflicts=0,
                             readers={"scanner": {"connected": True}}, bundle={"version": 1, "delta": 0}, at=time.time())


def test_a_hundred_lanes_render_with_their_counts(tmp_path: Path, page: Any) -> None:
    broker = Mosquitto(tmp_path / "broker")  # anonymous: the lanes here are one publisher of the test's
    try:
        gates = [f"lane-{i:03d}" for i in range(LANES)]
        roster = [signed.roster_entry(g, bytes(KEYS.add(g).verify_key), zone=ZONES[i % 4]) for i, g in enumerate(gates)]
        publisher = Watcher(broker.port, [])
        publisher.publish(f"{ROOT}bundle", signed.sign(signed.bundle_payload(VENUE, 1, time.time(), [], b"", roster), ADMIN),
                          retain=True)
        for i, gate in enumerate(gates):
            publisher.publish(f"{ROOT}gates/{gate}/status", status(gate), retain=True)
        passwords = {"venue-monitor": tmp_path / "none.pw", "venue-admin": tmp_path / "none.pw"}
        passwords["venue-monitor"].write_text("x\n")
        running = RunningDashboard(dashboard_config(tmp_path / "dash", broker, passwords))
        try:
            seal = {g: sealer(KEYS.add(g), VENUE) for g in gates}
            now = time.time()
            for i, gate in enumerate(gates):  # lane i has let i % 7 + 1 people in
                records = [Record(gate, n, "forced_passage", now, direction="in", epoch="e1") for n in range(1, i % 7 + 2)]
                publisher.publish(f"{ROOT}ledger/{gate}", bus.encode_records(gate, [seal[gate](r) for r in records]))
            total = sum(i % 7 + 1 for i in range(LANES))
            WebDriverWait(page, 1, poll_frequency=0.01)  # (a browser that is up)
            log_in(page, running.url)

            loads = []
            for _ in range(5):  # a fresh page each time: navigation → 100 rows drawn with their counts
                started = time.monotonic()
                page.get(running.url + "/")
                WebDriverWait(page, 10, poll_frequency=0.005).until(
                    lambda d: len(d.find_elements(By.CSS_SELECTOR, "#lanes tbody tr")) == LANES
                    and d.find_element(By.CSS_SELECTOR, '[data-total="entries"] .value').text == str(total))
                loads.append(time.monotonic() - started)
            assert page.find_element(By.CSS_SELECTOR, "#lane-lane-099 .c-entries").text == str(99 % 7 + 1)
            assert page.find_element(By.CSS_SELECTOR, "#zone-north .occupancy").text == str(sum(i % 7 + 1 for i in range(0, LANES, 4)))

            updates = []
            for n in range(10):  # one more person at lane-050: record published → page shows it
                seq = 50 % 7 + 2 + n
                expected = str(seq)
                started = time.monotonic()
                publisher.publish(f"{ROOT}ledger/lane-050", bus.encode_records("lane-050", [seal["lane-050"](
                    Record("lane-050", seq, "forced_passage", time.time(), direction="in", epoch="e1"))]))
                WebDriverWait(page, 5, poll_frequency=0.002).until(
                    lambda d, expected=expected: d.find_element(By.CSS_SELECTOR, "#lane-lane-050 .c-entries").text == expected)
                updates.append(time.monotonic() - started)
            render_ms = page.execute_script("return window.gateRenderMs")
            print(f"\ndashboard, {LANES} lanes: page load to every row drawn median {statistics.median(loads) * 1000:.0f} ms "
                  f"(max {max(loads) * 1000:.0f}); one push re-rendered in {render_ms:.1f} ms; record on the bus → page "
                  f"median {statistics.median(updates) * 1000:.0f} ms (max {max(updates) * 1000:.0f})")
        finally:
            running.stop()
            publisher.close()
    finally:
        broker.stop()
