"""The venue dashboard in a real headless Chromium, reading a real mosquitto as venue-monitor
(the shipped ACL), with real simulated lanes and a scripted crowd: what a person at the control
room sees."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from hwsim.broker import Watcher
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboard.conftest import Bus, needs_browser
from tests.support.dashboard import (
    RunningDashboard,
    log_in,
    publish_zoned_roster,
    screenshot,
)
from tests.support.lanes import Lane, Tickets, wait_until
from tests.support.venue import ROOT

pytestmark = needs_browser

ZONES = {"gate-a": "north", "gate-b": "north", "gate-c": "south"}


def text_of(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def shows(driver: Any, css: str, expected: str, timeout: float = 10.0) -> None:
    """Wait until the element's text is ``expected`` (the page is pushed, never reloaded)."""
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: _text(d, css) == expected, message=f"{css} never showed {expected!r} (last: {_text(driver, css)!r})")


def _text(driver: Any, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def admit(lane: Lane, ticket: str) -> None:
    decision = lane.present(ticket)
    assert decision["accepted"], decision
    lane.passed(decision)
    lane.idle()


def refuse(lane: Lane, ticket: str) -> str:
    decision = lane.present(ticket, walks=None)
    lane.idle()
    return decision["reason"]


def walk_out(lane: Lane) -> None:
    before = len(lane.records("free_exit"))
    lane.turnstile.pass_through("out")
    wait_until(lambda: len(lane.records("free_exit")) > before, 5)


def force_in(lane: Lane) -> None:
    before = len(lane.records("forced_passage"))
    lane.turnstile.pass_through("in")
    wait_until(lambda: len(lane.records("forced_passage")) > before, 5)


def own_counts(lane: Lane) -> tuple[int, int]:
    """Entries and exits in the lane's own ledger, counted as a person would from the rows."""
    gate = lane.daemon.config.gate_id
    rows = [r for r in lane.records() if r["origin"] == gate]
    entries = sum(1 for r in rows if r["kind"] in ("passage", "forced_passage") and r["direction"] == "in")
    exits = sum(1 for r in rows if r["kind"] == "free_exit" or r["kind"] in ("passage", "forced_passage") and r["direction"] == "out")
    return entries, exits


def venue(make_bus: Callable[..., Bus], venue_lane: Callable[..., Lane], gates: list[str],
          started: list[str] | None = None) -> tuple[Bus, dict[str, Lane]]:
    """The venue's broker and roster with ``gates``; lanes started for ``started`` (default: all)."""
    bus = make_bus(gates)
    publish_zoned_roster(bus.broker, {g: ZONES.get(g) for g in gates}, bus.passwords["venue-admin"])
    return bus, {gate: venue_lane(bus, gate) for gate in (gates if started is None else started)}


def test_counts_and_zone_occupancy_on_the_page_equal_the_ledgers(make_bus: Any, venue_lane: Any, dashboard: Any,
                                                                 page: Any, tickets: Tickets) -> None:
    bus, lanes = venue(make_bus, venue_lane, list(ZONES))
    running: RunningDashboard = dashboard(bus, capacity={"north": 7, "south": 100}, alarm_percent=80)
    log_in(page, running.url)
    for gate in ZONES:
        shows(page, f"#lane-{gate} .c-state", "up")
    a, b, c = lanes["gate-a"], lanes["gate-b"], lanes["gate-c"]

    # the crowd: owners get in, screenshots of their tickets are refused at the next gate,
    # some leave through the free exits, one climbs through
    shown = [tickets.static() for _ in range(6)]
    for i, ticket in enumerate(shown):
        admit((a, b, c)[i % 3], ticket)
    for i, ticket in enumerate(shown[:3]):
        lane = (b, c, a)[i]
        wait_until(lambda lane=lane: len(lane.records("admission")) >= 6, 5)  # every admission merged
        assert refuse(lane, ticket) == "already_used"
    admit(a, tickets.static())
    admit(b, tickets.static())
    walk_out(a)
    walk_out(c)
    force_in(b)

    for gate, lane in lanes.items():
        entries, exits = own_counts(lane)
        shows(page, f"#lane-{gate} .c-entries", str(entries))
        shows(page, f"#lane-{gate} .c-exits", str(exits))
    north = sum(own_counts(lanes[g])[0] - own_counts(lanes[g])[1] for g in ("gate-a", "gate-b"))
    south = own_counts(c)[0] - own_counts(c)[1]
    assert north == 6  # a: 3 in, 1 out; b: 3 in, 1 forced
    shows(page, "#zone-north .occupancy", f"{north} / 7")
    shows(page, "#zone-south .occupancy", f"{south} / 100")
    assert "ALARM" in text_of(page, "#zone-north") and "alarm" in page.find_element(By.ID, "zone-north").get_attribute("class")
    assert "ALARM" not in text_of(page, "#zone-south")
    shows(page, '[data-reason="already_used"]', "already_used: 3")
    shows(page, '[data-total="forced passages"] .value', "1")
    entries = sum(own_counts(lane)[0] for lane in lanes.values())  # the chart's bars (redrawn in place) add up to them
    WebDriverWait(page, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#chart rect')].reduce((n, r) => n + parseInt(r.textContent, 10), 0)") == entries)
    WebDriverWait(page, 5).until(lambda d: "refused: already_used" in _text(d, "#lane-gate-a .c-last") or "let in" in _text(d, "#lane-gate-a .c-last"))
    screenshot(page, "dashboard")


def entries_on_the_page(driver: Any) -> dict[str, int]:
    """Each lane's entries as its row shows them."""
    return driver.execute_script(
        "const o = {}; for (const r of document.querySelectorAll('#lanes tbody tr')) "
        "o[r.dataset.gate] = parseInt(r.querySelector('.c-entries').textContent, 10); return o;")


def test_while_the_lanes_scan_the_page_keeps_up_with_the_ledgers_and_never_counts_ahead(
        make_bus: Any, venue_lane: Any, dashboard: Any, page: Any, tickets: Tickets) -> None:
    """A crowd at three lanes at once; the page is read throughout. How fast it keeps up is
    scripts/bench --dashboard's to measure: here it only has to get there."""
    bus, lanes = venue(make_bus, venue_lane, list(ZONES))
    running: RunningDashboard = dashboard(bus)
    log_in(page, running.url)
    for gate in ZONES:
        shows(page, f"#lane-{gate} .c-entries", "0")
    per_lane = 10
    queues = {gate: [tickets.static() for _ in range(per_lane)] for gate in ZONES}
    failures: list[str] = []

    def crowd(lane: Lane, queue: list[str]) -> None:
        try:
            for ticket in queue:
                admit(lane, ticket)
        except Exception as exc:  # noqa: BLE001 -- the test fails on it below
            failures.append(f"{lane.daemon.config.gate_id}: {exc!r}")

    def ledgers() -> dict[str, int]:
        return {gate: own_counts(lane)[0] for gate, lane in lanes.items()}

    def never_ahead() -> dict[str, int]:
        shown = entries_on_the_page(page)  # read before the ledgers, which only grow
        held = ledgers()
        assert all(shown[gate] <= held[gate] for gate in ZONES), f"the page counts {shown}, the ledgers hold {held}"
        return shown

    threads = [threading.Thread(target=crowd, args=(lanes[g], queues[g]), daemon=True) for g in ZONES]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: failures or min(ledgers().values()) >= per_lane // 2, 60)  # half the crowd is in
        halfway = ledgers()
        wait_until(lambda: all(n >= halfway[g] for g, n in never_ahead().items()), 30, 0.05)  # caught up, people still coming
    finally:
        for thread in threads:
            thread.join(60)
    assert not failures, failures
    final = ledgers()
    assert final == dict.fromkeys(ZONES, per_lane)
    wait_until(lambda: never_ahead() == final, 30, 0.05)
    shows(page, '[data-total="entries"] .value', str(sum(final.values())))


def test_a_lane_that_stops_turns_red_and_a_killed_one_within_its_keepalive(make_bus: Any, venue_lane: Any, dashboard: Any,
                                                                           page: Any, tmp_path: Any, issuer: Any) -> None:
    from hwsim.venue import Gate

    from tests.support.lanes import write_config
    from tests.support.venue import gate_config

    bus, lanes = venue(make_bus, venue_lane, list(ZONES), started=["gate-a", "gate-b"])
    process_config = gate_config(tmp_path, issuer, "gate-c", bus.broker, password_file=str(bus.passwords["gate-c"]))
    killed = Gate("gate-c", write_config(tmp_path / "gate-c" / "gate.toml", process_config))  # a real `gate run` process
    try:
        running = dashboard(bus)
        log_in(page, running.url)
        for gate in ("gate-a", "gate-b", "gate-c"):
            shows(page, f"#lane-{gate} .c-state", "up", timeout=20)

        lanes["gate-b"].stop()  # systemctl stop: the lane says offline itself
        shows(page, "#lane-gate-b .c-state", "down")
        assert page.find_element(By.ID, "lane-gate-b").get_attribute("data-health") == "down"

        killed.process.kill()  # a crash or a cut cable: the broker publishes its Last Will
        killed.process.wait(10)
        keepalive = process_config["sync"]["keepalive"]
        shows(page, "#lane-gate-c .c-state", "down", timeout=keepalive * 1.5 + 2)
        shows(page, "#lane-gate-a .c-state", "up")
        shows(page, '[data-total="lanes down"] .value', "2")
        screenshot(page, "dashboard-lanes-down")
    finally:
        if killed.process.poll() is None:
            killed.process.kill()
        killed.scanner.close()
        killed.log.close()


def test_a_command_is_confirmed_reaches_the_lane_and_its_answer_shows(make_bus: Any, venue_lane: Any, dashboard: Any,
                                                                      page: Any) -> None:
    bus, lanes = venue(make_bus, venue_lane, ["gate-a"])
    running = dashboard(bus)
    log_in(page, running.url)
    shows(page, "#lane-gate-a .c-mode", "normal")
    row = page.find_element(By.ID, "lane-gate-a")
    row.find_element(By.CSS_SELECTOR, "select.mode-select option[value=locked]").click()
    row.find_element(By.CSS_SELECTOR, "button.cmd-set-mode").click()
    shows(page, "#confirm-question", "Really set the mode of gate-a to locked?")
    assert lanes["gate-a"].daemon.loop.turnstile.mode == "normal"  # nothing sent before the confirmation
    screenshot(page, "dashboard-command-confirmation")
    page.find_element(By.ID, "confirm-ok").click()

    try:  # (30 s as the suite's other waits: a busy 2-core CI machine; it takes well under a second here)
        WebDriverWait(page, 30, poll_frequency=0.02).until(
            lambda d: "done: mode is now locked" in (_text(d, "#commands") or ""))
    except Exception as exc:  # say where it stuck: the audit log (asked / sent / answered), the lane, the page
        audit = running.audit.read_text() if running.audit.exists() else "(no audit log)"
        raise AssertionError(f"no answer shown: lane mode {lanes['gate-a'].daemon.loop.turnstile.mode}, page "
                             f"{_text(page, '#commands')!r}, audit {audit[-600:]!r}") from exc
    assert lanes["gate-a"].daemon.loop.turnstile.mode == "locked"
    shows(page, "#lane-gate-a .c-mode", "locked")
    screenshot(page, "dashboard-command-answered")
    events = [json.loads(line) for line in running.audit.read_text().splitlines()]
    assert [e["event"] for e in events] == ["asked", "sent", "answered"]
    assert {e["user"] for e in events if "user" in e} == {"ops"}
    assert events[2]["state"] == "done" and events[1]["nonce"] == events[2]["nonce"]
    text = running.audit.read_text()
    assert "pw-" not in text and "correct horse" not in text


def test_without_the_admin_key_commands_are_refused_and_the_page_says_so(make_bus: Any, venue_lane: Any, dashboard: Any,
                                                                          page: Any) -> None:
    bus, lanes = venue(make_bus, venue_lane, ["gate-a"])
    running = dashboard(bus, admin_key=False)
    log_in(page, running.url)
    shows(page, "#commands-off", "Commands are off: no admin key on this host.")
    shows(page, "#lane-gate-a .commands", "–")
    csrf = page.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    answer = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/commands/prepare', {method: 'POST', headers: {'content-type': 'application/json', 'x-csrf-token': arguments[0]},
              body: JSON.stringify({gate: 'gate-a', command: 'set_mode', mode: 'locked'})}).then(r => r.json()).then(done);""", csrf)
    assert answer == {"ok": False, "error": "commands are off: no admin key on this host ([commands] signing_key_file)"}
    assert lanes["gate-a"].daemon.loop.turnstile.mode == "normal"
    assert json.loads(running.audit.read_text().splitlines()[-1])["event"] == "refused"


def test_hostile_messages_on_the_bus_do_not_break_the_page(make_bus: Any, venue_lane: Any, dashboard: Any, page: Any,
                                                           tickets: Tickets) -> None:
    bus, lanes = venue(make_bus, venue_lane, ["gate-a", "gate-b"])
    running = dashboard(bus)
    log_in(page, running.url)
    shows(page, "#lane-gate-b .c-state", "up")
    # gate-b's stolen password writes what it likes on gate-b's own topics
    thief = Watcher(bus.broker.port, [], username="gate-b", password="pw-gate-b")
    try:
        for payload in (b"not json", b"[" * 100_000, b'{"v": 2, "gate": "gate-b", "state": "online", "mode": 7}',
                        b'{"v": 2, "gate": "gate-a", "state": "offline"}',  # another gate's name on b's topic
                        json.dumps({"v": 2, "gate": "gate-b", "state": "online", "mode": "<img src=x onerror=alert(1)>"}).encode(),
                        b'{"v": 2, "gate": "gate-b", "state": "online", "counters": {"tamper": "lots"}, "readers": []}'):
            thief.publish(f"{ROOT}gates/gate-b/status", payload)
        thief.publish(f"{ROOT}scans/gate-b", b'{"gate": "gate-b", "accepted": "yes"}', qos=1)
        thief.publish(f"{ROOT}ledger/gate-b", b'{"v": 2, "origin": "gate-b", "records": [{"signed": "{}", "sig": "AAAA"}]}')
    finally:
        thief.close()
    admit(lanes["gate-a"], tickets.static())
    shows(page, "#lane-gate-a .c-entries", "1")  # the page goes on
    assert running.dashboard.hub.venue.malformed  # counted (and logged)
    assert page.find_elements(By.TAG_NAME, "img") == []  # bus text is text, never markup
    assert _text(page, "#lane-gate-a .c-state") == "up"


def test_the_page_and_its_data_need_a_session_and_a_wrong_password_gets_nowhere(make_bus: Any, dashboard: Any, page: Any) -> None:
    bus = make_bus(["gate-a"])
    running = dashboard(bus)
    for path in ("/api/state", "/events"):
        try:
            urllib.request.urlopen(running.url + path, timeout=5)
            raise AssertionError(f"{path} answered without a session")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    page.get(running.url + "/")
    WebDriverWait(page, 5).until(ec.presence_of_element_located((By.ID, "sign-in")))
    page.find_element(By.ID, "name").send_keys("ops")
    page.find_element(By.ID, "password").send_keys("guess")
    page.find_element(By.ID, "sign-in").click()
    shows(page, ".error", "Wrong name or password.")
    assert "guess" not in page.current_url and "password" not in page.current_url
    screenshot(page, "dashboard-login")
    log_in(page, running.url)
    assert page.current_url == running.url + "/"
    headers = urllib.request.urlopen(running.url + "/login", timeout=5).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    cookie = page.get_cookie("gate_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def http_login(running: RunningDashboard) -> tuple[str, str]:
    """The session cookie and CSRF token of a login made as the page's form makes it."""
    import http.client
    import re
    from urllib.parse import urlencode

    from tests.support.dashboard import PASSWORD, USER

    conn = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    try:
        conn.request("POST", "/login", body=urlencode({"name": USER, "password": PASSWORD}),
                     headers={"content-type": "application/x-www-form-urlencoded"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 303, answer.status
        cookie = answer.headers["set-cookie"].split(";")[0]
        conn.request("GET", "/", headers={"cookie": cookie})
        html = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return cookie, found.group(1)


def raw_answer(port: int, head: str, chunks: tuple[bytes, ...] = ()) -> str:
    """Send a request's head (and some body chunks, never its end) and read the status line the
    dashboard answers with, while the connection still owes it the rest of the body."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(chunk)
        return sock.makefile("rb").readline().decode().strip()


def test_a_huge_post_is_refused_before_its_body_is_read(make_bus: Any, dashboard: Any) -> None:
    running = dashboard(make_bus(["gate-a"]))
    port = running.config.port
    login = "POST /login HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n"
    # ten gigabytes announced, none sent: the answer comes at once, from the header alone
    assert raw_answer(port, login + "content-length: 10000000000\r\n\r\n") == "HTTP/1.1 413 Request Entity Too Large"
    # no length announced (chunked): refused once a little more than the limit has come, the end never sent
    chunk = b"3e8\r\n" + b"a" * 1000 + b"\r\n"
    assert raw_answer(port, login + "transfer-encoding: chunked\r\n\r\n", (chunk,) * 5).startswith("HTTP/1.1 413")
    cookie, csrf = http_login(running)
    command = (f"POST /api/commands/prepare HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\nx-csrf-token: {csrf}\r\n"
               "content-type: application/json\r\ncontent-length: 10000000000\r\n\r\n")
    assert raw_answer(port, command).startswith("HTTP/1.1 413")


def test_a_logout_ends_the_open_event_stream(make_bus: Any, dashboard: Any) -> None:
    import http.client

    running = dashboard(make_bus(["gate-a"]))
    cookie, csrf = http_login(running)
    stream = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    other = http.client.HTTPConnection("127.0.0.1", running.config.port, timeout=10)
    try:
        stream.request("GET", "/events", headers={"cookie": cookie})
        events = stream.getresponse()
        assert events.status == 200
        while not events.readline().startswith(b"data: "):  # the first state pushed: the stream is live
            pass
        other.request("POST", "/logout", headers={"cookie": cookie, "x-csrf-token": csrf})
        answer = other.getresponse()
        answer.read()
        assert answer.status == 303
        events.read()  # returns when the server ends the stream (a socket timeout of 10 s fails the test)
        assert events.isclosed()
        other.request("GET", "/events", headers={"cookie": cookie})
        assert other.getresponse().status == 401
    finally:
        stream.close()
        other.close()
