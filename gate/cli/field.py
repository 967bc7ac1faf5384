"""The technician's commands at the lane: ``gate doctor``, ``gate status`` and ``gate safe``."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any, TextIO

from gate.field.status_server import decision_summary, json_lines  # the standard library only

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
RECONNECT_EVERY = 1.0  # seconds between tries while the lane is away (gate status, live)
MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "-"}


# --- gate doctor ----------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from gate import config as config_module
    from gate.field.doctor import FAIL, WARN, Check, Doctor

    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as exc:
        hint = ("sudo gate doctor (the config is root's and the gate user's)" if exc.problems == ["not readable by this user"]
                else "fix the config, then: gate check-config")
        checks = [Check("config", FAIL, "; ".join(exc.problems), hint, f"the config: {exc.path}")]
        title = f"gate doctor: {args.config}"
    else:
        formats = ", ".join(config.engine.formats)
        checks = [Check("config", "ok", f"{config.path}: valid; formats {formats}"), *Doctor(config, click=args.click).run()]
        title = f"gate doctor: lane {config.gate_id} at {config.venue} ({config.path})"
    failed = sum(c.result == FAIL for c in checks)
    warned = sum(c.result == WARN for c in checks)
    if args.json:
        print(json.dumps({"ok": failed == 0, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        print(title)
        width = max(len(c.name) for c in checks)
        for check in checks:
            print(f"  {check.name:<{width}}  {MARK[check.result]:<4}  {check.detail}")
            if check.fix and check.result in (FAIL, WARN):
                print(f"  {'':<{width}}        → {check.fix}")
                if args.verbose and check.more:
                    print(f"  {'':<{width}}          {check.more}")
        if not args.verbose and any(c.more and c.result in (FAIL, WARN) for c in checks):
            print("(gate doctor --verbose: the details behind each hint)")
        print(f"{failed} failed, {warned} to look at" if failed or warned else "all good")
    return EXIT_FAILED if failed else EXIT_OK


# --- gate status ----------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """The lane's status, redrawn as it changes (``--once``, ``--json``: printed once). Live, it
    waits for a lane that is not running yet and reconnects when the lane restarts."""
    from gate import config as config_module

    try:
        path = config_module.load(args.config).status.socket
    except config_module.ConfigError as exc:
        if exc.problems != ["not readable by this user"]:
            raise
        # A technician in the gate-status group reads the status socket, not the config.
        path = config_module.StatusConfig.socket
    live = not (args.once or args.json)
    view = StatusView()
    while True:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(path)
        except PermissionError:
            print(f"gate: not allowed to read {path}: run with sudo, or join the gate-status group", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:
            sock.close()
            if not live:
                print(f"gate: no lane answers on {path} ({exc.strerror or exc}): is it running? systemctl status gate",
                      file=sys.stderr)
                return EXIT_FAILED
            if not _waiting(view, f"waiting for the lane: nothing answers on {path} ({exc.strerror or exc})", args.width):
                return EXIT_OK
            continue
        try:
            outcome = _follow(sock, view, args, live)
        finally:
            sock.close()
        if outcome is not None:
            return outcome
        if not _waiting(view, "reconnecting: the lane closed its status socket (stopped or restarting)", args.width):
            return EXIT_OK


def _follow(sock: socket.socket, view: StatusView, args: argparse.Namespace, live: bool) -> int | None:
    """Show one connection's messages; the exit code, or None when the lane went away (live)."""
    try:
        sock.settimeout(None if live else 5.0)
        for message in json_lines(sock):
            if args.json:
                if message.get("event") == "status":
                    print(json.dumps(message))
                    return EXIT_OK
                continue
            if view.take(message) and (live or view.status):
                if live:
                    sys.stdout.write("\x1b[H\x1b[2J")  # home, clear: a screen that redraws in place
                view.render(sys.stdout, width=args.width)
                sys.stdout.flush()
                if not live:
                    return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    except (OSError, ValueError) as exc:
        if not live:
            print(f"gate: lost the lane's status: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return None
    if not live:
        print("gate: the lane closed its status socket (stopped or restarting)", file=sys.stderr)
        return EXIT_FAILED
    return None


def _waiting(view: StatusView, why: str, width: int) -> bool:
    """Say why the screen is not live, then wait a second; False when the technician pressed Ctrl-C."""
    view.status = {}
    sys.stdout.write("\x1b[H\x1b[2J" + f"gate status: {why}"[:width] + "\n")
    sys.stdout.flush()
    try:
        time.sleep(RECONNECT_EVERY)
    except KeyboardInterrupt:
        return False
    return True


class StatusView:
    """The lane as a technician reads it: the latest status, decisions as they arrive."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.recent: list[dict[str, Any]] = []

    def take(self, message: dict[str, Any]) -> bool:
        """Fold one message in; True when the screen should be redrawn."""
        kind = message.get("event")
        if kind == "status":
            self.status = message
            self.recent = list(message.get("recent", []))
            return True
        if kind == "decision" and self.status:
            self.recent.insert(0, decision_summary(message, message.get("at") or time.time()))
            del self.recent[20:]
            return True
        return kind in ("alarm", "mode", "clock")

    def render(self, out: TextIO, width: int = 80) -> None:
        from gate.field.doctor import duration_text

        def age_text(seconds: float) -> str:
            return f"{seconds:.1f} s" if seconds < 60 else duration_text(seconds)

        s = self.status
        line = lambda text="": out.write(text[:width] + "\n")  # noqa: E731
        line(f"{s.get('gate')} at {s.get('venue')}   gate {s.get('version')}   pid {s.get('pid')}   up {duration_text(s.get('uptime', 0))}")
        if "problem" in s:
            line(f"!!! {s['problem']} !!!")
            return
        mode = s.get("mode", "?").upper()
        line(f"MODE     {mode}" + ("   !!! FIRE ALARM: lane released, scans refused !!!" if s.get("emergency") else ""))
        clock = s.get("clock", {})
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock.get("now", time.time())))
        if clock.get("synchronized", True):
            line(f"CLOCK    {now}, synchronized")
        else:
            refused = "time-dependent tickets REFUSED" if clock.get("guard") == "refuse" else "admitting on an unchecked clock"
            line(f"CLOCK    !!! NOT SYNCHRONIZED: {refused}")  # (its time is wrong anyway)
        bundle = s.get("bundle", {})  # the lane's Held.as_dict(), and what it refused
        refused = f"; REFUSED {bundle['refused']}: {bundle.get('last_refusal')}" if bundle.get("refused") else ""
        if bundle.get("version"):
            line(f"BUNDLE   version {bundle['version']}, signed {duration_text(time.time() - bundle.get('issued_at', 0))} ago, "
                 f"{bundle.get('revoked', 0)} revoked" + (f", delta {bundle['delta']}" if bundle.get("delta") else "") + refused)
        else:
            line("BUNDLE   none (trust from the config and gate keys import)" + refused)
        sync = s.get("sync")
        if sync:
            state = "connected" if sync.get("connected") else "NOT CONNECTED (deciding offline)"
            line(f"SYNC     {sync.get('broker')} {state}; outbox {sync.get('outbox')}, merged {sync.get('counters', {}).get('merged', 0)}, "
                 f"conflicts {sync.get('conflicts', 0)}")
            refusals = sync.get("refusals") or {}
            if refusals:  # peers' records refused: forged, unsigned, off the roster, out of order
                line("REFUSED  peer records: " + ", ".join(f"{why} {count}" for why, count in sorted(refusals.items())))
        else:
            line("SYNC     off (a lone lane)")
        readers = []
        for name, reader in s.get("readers", {}).items():
            if "problem" in reader:
                readers.append(f"{name} DOWN: {reader['problem']}")
            elif "connected" in reader:
                readers.append(f"{name} {'up' if reader['connected'] else 'DOWN'}")
            else:
                readers.append(f"{name} {reader.get('frames', 0)} frames")
            if reader.get("restarts"):  # the camera's stall watchdog
                readers[-1] += f" ({reader.get('stalls', 0)} stalls, {reader['restarts']} restarts)"
            if reader.get("last_activity_age_s") is not None:  # the camera's last frame, the scanner's line, NFC's poll
                what = "frame" if "frames" in reader else "poll" if name == "nfc" else "line"
                readers[-1] += f", last {what} {age_text(reader['last_activity_age_s'])} ago"
            if "taps" in reader:
                readers[-1] += f", {reader['taps']} taps ({reader.get('failed', 0)} failed)"
            if reader.get("last_error"):  # why it is down, or what went wrong since: a line of its own
                when = reader.get("last_error_age_s")
                readers.append(f"  {'last error' if when is None else age_text(when) + ' ago'}: {reader['last_error']}")
        for n, text in enumerate(readers or ["none"]):  # one a line: 80 columns hold one reader's story
            line(("READERS  " if n == 0 else " " * 9) + text)
        counters = s.get("counters", {})
        shown = [f"accepted {counters.get('accepted', 0)}"]
        shown += [f"{name.removeprefix('denied.')} {count}" for name, count in sorted(counters.items()) if name != "accepted"]
        line("COUNTS   " + " · ".join(shown))
        line()
        line("LAST DECISIONS")
        for d in self.recent[:12]:
            at = time.strftime("%H:%M:%S", time.localtime(d.get("at") or 0))
            mark = "OPEN  " if d["accepted"] else "DENIED"
            line(f"  {at} {mark} {d['reason']:<15} {d.get('format') or '-':<12} {d.get('direction') or '':<3} "
                 f"{d.get('source') or '':<7} {(d.get('ticket') or '-')[:8]:<8} {d.get('latency_ms') or 0:>5.1f}ms {d.get('detail') or ''}")
        if not self.recent:
            line("  (none since the lane started)")


# --- gate safe ------------------------------------------------------------------------------


def cmd_safe(args: argparse.Namespace) -> int:
    """Drive the outputs to their safe state and let go (systemd's ExecStopPost after any stop)."""
    from gate import config as config_module
    from gate.field.doctor import opened_lane

    if args.boot_lines:  # install-pi.sh: config.txt's gpio= lines; only [gpio] is read
        from drivers.gpio import boot_lines

        print("\n".join(boot_lines(config_module.load_gpio(args.config))))
        return EXIT_OK
    config = config_module.load(args.config)
    try:
        with opened_lane(config):
            pass  # opened de-energized; leaving the block drives every output to its safe state
    except Exception as exc:  # the pins are held (a lane still running) or missing
        print(f"gate: could not set the outputs safe: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"outputs safe: {', '.join(f'unlock_{d}' for d in config.gpio.unlock)} released, red on")
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check config, devices, clock, broker, trust, database and disk")
    p.add_argument("--json", action="store_true", help="the checks as JSON, for scripts")
    p.add_argument("--click", action="store_true", help="also pulse each unlock relay once (the lane must be stopped)")
    p.add_argument("--verbose", "-v", action="store_true", help="the details behind each hint (why, and the long form of the fix)")
    p.set_defaults(fn=cmd_doctor)

    p = sub.add_parser("status", parents=[common], help="a live view of the running lane (Ctrl-C to leave)")
    p.add_argument("--once", action="store_true", help="print the status once and exit")
    p.add_argument("--json", action="store_true", help="print one status snapshot as JSON and exit")
    p.add_argument("--width", type=int, default=80, help="cut lines at this many characters (default: an 80-column ssh)")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("safe", parents=[common], help="set the outputs to their safe state (relays released, red on)")
    p.add_argument("--boot-lines", action="store_true",
                   help="print config.txt's gpio= lines that hold these levels from boot on (install-pi.sh writes them)")
    p.set_defaults(fn=cmd_safe)
