"""``scripts/demo``: one simulated lane, the real daemon, a scripted crowd.

The daemon (``gate run``) runs as its own process on simulated hardware: gpiozero mock pins with
a simulated turnstile inside it, and a serial scanner on a pseudo-terminal outside it, which the
real serial driver reads. This script plays the crowd and shows what the lane does. With
``--camera`` the crowd holds its tickets up to the simulated camera instead (phones and paper,
turned, tilted, some in dark mode), and the real camera reader and zxing-cpp read them.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwsim import crowd as crowds
from hwsim.control import ControlClient
from hwsim.lane_config import EVENT, HOLD_OFF, write_config
from hwsim.scanner import SimulatedScanner

# How the crowd holds tickets up to the camera, person after person (hwsim.camera.Look's fields).
LOOKS = [
    {"medium": "paper"},
    {"medium": "phone", "turn": 20},
    {"medium": "phone", "inverted": True},
    {"medium": "paper", "turn": -30, "tilt": 0.2, "blur": 0.8},
    {"medium": "phone", "glare": 0.5, "size": 0.5},
]

GLYPH = {True: "●", False: "○"}


def _outputs_line(outputs: dict[str, bool]) -> str:
    return "  ".join(f"{name} {GLYPH[outputs.get(name, False)]}" for name in ("unlock_in", "green", "red", "buzzer"))


class Demo:
    def __init__(self, workdir: Path, quick: bool, camera: bool = False) -> None:
        self.workdir = workdir
        self.quick = quick
        self.camera = camera
        self.shown = 0
        self.walk = 0.15 if quick else 0.6
        self.timeout = 1.0 if quick else 3.0
        self.summary: collections.Counter[str] = collections.Counter()
        self.mismatches: list[str] = []

    def run(self) -> int:
        reader = "the simulated camera" if self.camera else "the simulated serial scanner"
        print(f"gate demo: a simulated lane with the real daemon; tickets go to {reader}\n")
        keys = crowds.make_keys(self.workdir)
        revoked = crowds.refunded_ticket(self.workdir, EVENT)
        config = write_config(self.workdir, keys["issuer_public"], walk=self.walk, timeout=self.timeout, camera=self.camera)
        (self.workdir / "refunds.txt").write_text(revoked + "\n")
        subprocess.run([sys.executable, "-m", "gate", "revoke", "--config", str(config), "--file",
                        str(self.workdir / "refunds.txt"), "--note", "refund"], check=True, capture_output=True)
        people = crowds.crowd(self.workdir, EVENT, revoked)
        scanner = SimulatedScanner(self.workdir / "scanner")
        log = open(self.workdir / "gate.log", "w")
        daemon = subprocess.Popen([sys.executable, "-m", "gate", "run", "--config", str(config)], stderr=log)
        try:
            self.lane = ControlClient(str(self.workdir / "sim.sock"), timeout=20)
            hello = self.lane.wait_for(lambda e: e["event"] == "hello")
            if not hello["ready"]:
                self.lane.wait_for(lambda e: e["event"] == "ready", timeout=20)
            if not scanner.wait_until_opened(20):
                raise RuntimeError("the daemon's serial driver never opened the scanner (see gate.log)")
            print(f"lane up (pid {daemon.pid}); outputs: {_outputs_line(hello['outputs'])}\n")
            for person in people:
                self.serve(person, scanner)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(15)
            final = {}
            for event in self.lane.events:
                if event["event"] == "output":
                    final[event["name"]] = event["on"]
            print(f"\nSIGTERM: daemon exited {code}; outputs now: {_outputs_line(final)} (safe: relay released, red)")
        finally:
            if daemon.poll() is None:
                daemon.kill()
            scanner.close()
            log.close()
        self.print_summary()
        return 0 if not self.mismatches and code == 0 else 1

    def serve(self, person: crowds.Person, scanner: SimulatedScanner) -> None:
        mark = self.lane.mark()
        if person.pulls_fire_alarm:
            active = person.expect == "emergency"
            self.lane.send("fire_alarm", active=active)
            event = self.lane.wait_for(lambda e: e["event"] == "alarm" and e.get("alarm") == "fire", start=mark)
            self.show(person.label, "fire loop " + ("OPEN → emergency" if active else "closed → normal"), mark)
            return
        if person.ticket is None:
            self.lane.send("force", direction="in")
            event = self.lane.wait_for(lambda e: e["event"] == "alarm", start=mark)
            self.record(person, event["alarm"])
            self.show(person.label, f"{event['alarm']} reported", mark)
            return
        self.lane.send("person", direction="in", walks=person.walks)
        self.lane.wait_for(lambda e: e["event"] == "queued", start=mark)  # in line before the scan arrives
        if self.camera:  # held up for a moment, the way people do
            look = LOOKS[self.shown % len(LOOKS)]
            self.shown += 1
            self.lane.send("show", text=person.ticket, look=look, seconds=0.6)
        else:
            scanner.scan(person.ticket)
        decision = self.lane.wait_for(lambda e: e["event"] == "decision", start=mark)
        if self.camera:  # they take it away; the camera's hold-off passes before the next one shows
            self.lane.send("clear")
            time.sleep(HOLD_OFF)
        outcome = "accepted" if decision["accepted"] else "denied"
        if decision["accepted"]:  # wait for the passage, or the revert when nobody passes
            record = self.lane.wait_for(
                lambda e: e["event"] == "record" and e["kind"] in ("passage", "revert"), start=mark, timeout=self.timeout + 5
            )
            outcome += ", passed" if record["kind"] == "passage" else ", nobody passed: reverted"
            self.summary[record["kind"]] += 1
        else:
            self.lane.send("leave", direction="in")  # refused: they step away
            time.sleep(0.45)  # the red light's and the buzzer's time
        self.record(person, decision["reason"])
        self.show(person.label, f"{outcome:<36} reason={decision['reason']}  ({decision['latency_ms']:.1f} ms)", mark)

    def record(self, person: crowds.Person, reason: str) -> None:
        self.summary[reason] += 1
        if reason != person.expect:
            self.mismatches.append(f"{person.label}: expected {person.expect}, lane said {reason}")

    def show(self, label: str, what: str, mark: int) -> None:
        changes = [f"{e['name']}{'↑' if e['on'] else '↓'}" for e in self.lane.events[mark:] if e["event"] == "output"]
        print(f"{label:<56} {what}")
        if changes:
            print(f"{'':<56} outputs: {' '.join(changes)}")

    def print_summary(self) -> None:
        print("\nsummary")
        for reason, count in sorted(self.summary.items()):
            print(f"  {reason:<16} {count}")
        if self.mismatches:
            print("\nUNEXPECTED:")
            for line in self.mismatches:
                print("  " + line)
        else:
            print("\nevery person got the outcome the lane should give")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description="a simulated lane and a scripted crowd")
    parser.add_argument("--quick", action="store_true", help="short walking times (CI)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (config, ledger)")
    parser.add_argument("--venue", action="store_true", help="three lanes sharing one ledger through mosquitto")
    parser.add_argument("--camera", action="store_true", help="the crowd holds tickets up to the simulated camera")
    parser.add_argument("--stay", action=argparse.BooleanOptionalAction, default=None,
                        help="with --venue: keep the lanes, the broker and the dashboard up after the story until Enter "
                             "or Ctrl-C, to look at the dashboard (default: when run at a terminal)")
    args = parser.parse_args(argv)
    if args.stay is None:
        args.stay = sys.stdin.isatty() and sys.stdout.isatty()
    workdir = Path(tempfile.mkdtemp(prefix="gate-demo-"))
    try:
        if args.venue:
            from hwsim.venue import VenueDemo

            return VenueDemo(workdir, args.quick, stay=args.stay).run()
        return Demo(workdir, args.quick, camera=args.camera).run()
    finally:
        if args.keep:
            print(f"\nkept {workdir} (config gate.toml, daemon log gate.log, ledger state/gate.db)")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
