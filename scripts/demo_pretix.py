"""``./scripts/demo --venue --pretix``: a real local pretix 2026.8.0, the bridge and three lanes.

Tickets are sold in pretix; the crowd shows them at the lanes; the check-ins appear in pretix.
Then an order is cancelled in pretix and its ticket is refused at every lane. It reuses the
test suite's real-pretix fixture (tests/support/pretix.py: pretix in its own virtualenv under
.cache/pretix/, a database migrated for this run) and its venue (a mosquitto with the shipped
ACL, lanes on the simulator, ``gate bridge run`` as a process). docs/back-office.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwsim.scanner import SimulatedScanner  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from gate import config as gate_config  # noqa: E402
from gate.daemon import Daemon  # noqa: E402
from tests.bridge.helpers import Venue, admit, gate_cli, trust_moved, versions  # noqa: E402
from tests.support.lanes import Lane, wait_until  # noqa: E402
from tests.support.pretix import PretixServer, PretixTemplate, ensure_pretix  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venue", action="store_true", help="(implied)")
    parser.add_argument("--pretix", action="store_true", help="(implied)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gate-demo-pretix-"))
    started = time.monotonic()
    say("pretix 2026.8.0 in its own virtualenv (installed on first use, about a minute) ...")
    python = ensure_pretix()
    say("migrating a fresh pretix database (about two minutes on two cores) ...")
    template = PretixTemplate(python, work / "template", {"events": [{"slug": "democon", "secrets": "pretix_sig1", "orders": 1}]})  # pretix publishes an event key with its first ticket
    pretix = PretixServer(template, work / "pretix")
    say(f"pretix runs at {pretix.url} (migrate {template.migrate_seconds:.0f} s)")
    lanes_started: list[Lane] = []

    def start_lane(data: dict) -> Lane:
        data = copy.deepcopy(data)
        scanner = SimulatedScanner(data["scanner"]["port"])
        daemon = Daemon(gate_config.parse(data, "demo.toml"))
        daemon.start()
        lane = Lane(daemon, scanner)
        lanes_started.append(lane)
        assert daemon.readers.scanner is not None and daemon.readers.scanner.connected.wait(5)
        return lane

    venue = Venue(work, SigningKey(b"\x01" * 32), start_lane, ["lane-1", "lane-2", "lane-3"])
    try:
        config = venue.bridge_config([{"slug": "democon", "checkin_list": pretix.event("democon")["list"]}], poll_interval=2.0)
        token = venue.secrets / "init.token"
        token.write_text(pretix.device_token)
        code, out = gate_cli("bridge", "enrol", "--bridge-config", str(config), "--url", pretix.url, "--token-file", str(token))
        say(f"gate bridge enrol: {out.strip().splitlines()[-1]}")
        bridge = venue.start_bridge(config)
        lanes = venue.start_lanes()
        say("the bridge and three lanes run; the lanes hold pretix's key from the bridge's signed bundle\n")
        sold = [pretix.sell("democon", f"fan{i}@example.org") for i in range(9)]
        say(f"sold in pretix: {len(sold)} tickets (orders {', '.join(s['order'] for s in sold)})")
        for i, ticket in enumerate(sold):
            lane = lanes[i % 3]
            decision = admit(lane, ticket["secret"])
            say(f"  order {ticket['order']} at {lane.daemon.config.gate_id}: {decision['reason']} ({decision['format']}), walks through")
        copy_at = lanes[1].present(sold[0]["secret"], walks=None)
        lanes[1].idle()
        say(f"  a screenshot of order {sold[0]['order']} at lane-2: {copy_at['reason']}")
        wait_until(lambda: len(pretix.checkins("democon")) == len(sold), 30)
        say(f"\npretix now shows {len(pretix.checkins('democon'))} check-ins:")
        for checkin in pretix.checkins("democon"):
            say(f"  position {checkin['position']}: {checkin['type']} at {checkin['datetime']} (device {checkin['device_id']})")
        late = pretix.sell("democon", "late@example.org")
        before = versions(lanes)
        t0 = time.monotonic()
        pretix.cancel("democon", late["order"])
        wait_until(lambda: trust_moved(lanes, before), 30)
        refusals = {lane.daemon.config.gate_id: lane.present(late["secret"], walks=None)["reason"] for lane in lanes}
        say(f"\norder {late['order']} cancelled in pretix; {time.monotonic() - t0:.1f} s later every lane refuses it: {refusals}")
        q = bridge.queue("pretix")
        say(f"\nbridge queue to pretix: done {q['done']}, pending {q['pending']}, lag p99 {q.get('lag_p99_s')} s")
        say(gate_cli("bridge", "status", "--bridge-config", str(config))[1])
        say(f"demo done in {time.monotonic() - started:.0f} s" + (f"; kept {work}" if args.keep else ""))
        return 0
    finally:
        for lane in lanes_started:
            lane.stop()
        venue.close()
        pretix.close()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
