"""The venue as the dashboard shows it: pure aggregation of what was read from the bus.

``Venue`` takes values (statuses, decisions, verified ledger records, the roster, command
answers) with the time they arrived, and ``snapshot`` gives the page one JSON-ready dict. No I/O,
no threads: the hub calls it under its lock, tests call it directly.

Counting comes from the **ledger records** (signed by their gates, deduplicated by
``(origin, epoch, seq)``), never from the decisions on ``scans/`` (QoS 0, for the live view
only), so the dashboard's entries equal the lanes' ledgers:

- an **entry** is a confirmed ``passage`` in direction ``in`` or a ``forced_passage`` in;
- an **exit** is a ``passage`` out, a ``free_exit`` or a ``forced_passage`` out;
- a zone's **occupancy** is its gates' entries minus their exits (the zone of each gate from the
  admin's roster, applied when the snapshot is made, so the order in which the bundle and the
  records arrive does not matter). Nobody is counted while a lane is in free mode or in a fire
  alarm: the lane records no passages then (docs/dashboard.md).
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gate.dashboard.messages import CommandResult, LaneStatus, Scan
from gate.decision import Reason
from gate.store.ledger import FORCED, FREE_EXIT, PASSAGE, Record
from gate.store.trust_store import RosterRow

CHART_MINUTES = 60
RECENT_COMMANDS = 20
MAX_RUNS = 1024  # separate runs of seqs remembered per (origin, epoch); see Seqs
REASONS = frozenset(reason.value for reason in Reason)
OTHER_REASON = "other"  # a refusal whose reason is not one of gate.decision's codes


class Seqs:
    """The seqs of one ``(origin, epoch)`` already counted, as sorted runs ``[first, last]``.

    A lane numbers its records 1, 2, 3…, so what arrives is mostly contiguous: the memory is one
    run per gap still open (a dashboard started mid-event holds one run from the first seq it
    saw; a record missed and filled in later by a catch-up answer joins two runs), not one entry
    per record. Should a sender open more than ``MAX_RUNS`` gaps, the two lowest runs are joined:
    a record of that oldest gap arriving afterwards is taken for a copy (not counted), the price of
    bounded memory."""

    __slots__ = ("firsts", "lasts")

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.lasts: list[int] = []

    def add(self, seq: int) -> bool:
        """Whether ``seq`` is new (and now remembered)."""
        firsts, lasts = self.firsts, self.lasts
        i = bisect.bisect_right(firsts, seq)  # runs[:i] start at or before seq
        if i and seq <= lasts[i - 1]:
            return False
        joins_left = bool(i) and lasts[i - 1] == seq - 1
        joins_right = i < len(firsts) and firsts[i] == seq + 1
        if joins_left and joins_right:
            lasts[i - 1] = lasts[i]
            del firsts[i], lasts[i]
        elif joins_left:
            lasts[i - 1] = seq
        elif joins_right:
            firsts[i] = seq
        else:
            firsts.insert(i, seq)
            lasts.insert(i, seq)
            if len(firsts) > MAX_RUNS:
                lasts[0] = lasts[1]
                del firsts[1], lasts[1]
        return True

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self.firsts, seq)
        return bool(i) and seq <= self.lasts[i - 1]

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in zip(self.firsts, self.lasts, strict=True))


@dataclass
class Lane:
    gate: str
    status: LaneStatus | None = None
    status_at: float | None = None  # when the dashboard received it (its own clock)
    last_scan: Scan | None = None
    last_scan_at: float | None = None
    refusals: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    entries: int = 0
    exits: int = 0
    forced: int = 0
    records: int = 0
    per_minute: Counter[int] = field(default_factory=Counter)  # entries by the record's minute (unix // 60)


@dataclass
class Venue:
    venue: str
    stale_after: float = 30.0
    capacity: dict[str, int] = field(default_factory=dict)  # the dashboard's config: zones the bundle gives none
    alarm_percent: float = 90.0
    lanes: dict[str, Lane] = field(default_factory=dict)
    roster: dict[str, RosterRow] = field(default_factory=dict)
    bundle_version: int | None = None
    bundle_capacity: dict[str, int] = field(default_factory=dict)  # the admin's bundle: what the lanes hold to
    seen: dict[tuple[str, str], Seqs] = field(default_factory=dict)  # (origin, epoch) → seqs counted
    malformed: Counter[str] = field(default_factory=Counter)  # refused bus messages by kind
    per_minute: Counter[int] = field(default_factory=Counter)  # every lane's entries by minute: the chart, one lookup a bar
    commands: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_COMMANDS))
    connected: bool = False

    def lane(self, gate: str) -> Lane:
        lane = self.lanes.get(gate)
        if lane is None:
            lane = self.lanes[gate] = Lane(gate)
        return lane

    # --- what arrives ------------------------------------------------------------------------

    def on_status(self, status: LaneStatus, now: float) -> None:
        """An offline status (a stop, or the Last Will) keeps what the lane last said, marked offline."""
        lane = self.lane(status.gate)
        if not status.online and lane.status is not None:
            status = replace(lane.status, online=False)
        lane.status, lane.status_at = status, now

    def on_scan(self, scan: Scan, now: float) -> None:
        lane = self.lane(scan.gate)
        lane.last_scan, lane.last_scan_at = scan, now
        if scan.accepted:
            lane.accepted += 1
        else:  # only the known codes: a lane cannot grow the table (or the page) with made-up reasons
            lane.refusals[scan.reason if scan.reason in REASONS else OTHER_REASON] += 1

    def on_records(self, records: Iterable[Record]) -> int:
        """Verified records (any order, duplicates welcome); how many were new."""
        new = 0
        for record in records:
            seqs = self.seen.get((record.origin, record.epoch))
            if seqs is None:
                seqs = self.seen[(record.origin, record.epoch)] = Seqs()
            if not seqs.add(record.seq):
                continue
            new += 1
            lane = self.lane(record.origin)
            lane.records += 1
            if record.kind in (PASSAGE, FORCED) and record.direction == "in":
                lane.entries += 1
                lane.per_minute[int(record.at // 60)] += 1
                self.per_minute[int(record.at // 60)] += 1
            elif record.kind == FREE_EXIT or record.kind in (PASSAGE, FORCED) and record.direction == "out":
                lane.exits += 1
            if record.kind == FORCED:
                lane.forced += 1
        return new

    def on_roster(self, version: int, rows: Iterable[RosterRow], zones: dict[str, int] | None = None) -> None:
        self.bundle_version = version
        self.roster = {row.gate: row for row in rows}
        self.bundle_capacity = dict(zones or {})
        for gate in self.roster:
            self.lane(gate)

    def on_command_sent(self, entry: dict[str, Any]) -> None:
        """A command went out (``nonce``, ``gate``, ``command``, ``user``, ``at``): shown until answered."""
        self.commands.appendleft({**entry, "state": "sent", "answer": ""})

    def on_command_result(self, result: CommandResult, now: float) -> dict[str, Any] | None:
        """The lane's answer to a command this dashboard sent (None for others' commands)."""
        for entry in self.commands:
            if entry["nonce"] == result.nonce and entry["gate"] == result.gate and entry["state"] == "sent":
                entry.update(state="done" if result.ok else "refused", answer=result.text, kind=result.kind or "",
                             answered_at=now)
                return entry
        return None

    def expire_commands(self, now: float, wait: float) -> list[dict[str, Any]]:
        expired = []
        for entry in self.commands:
            if entry["state"] == "sent" and now - entry["at"] > wait:
                entry.update(state="no_answer", answer=f"no answer within {wait:g} s (is the lane online?)")
                expired.append(entry)
        return expired

    # --- what the page shows -----------------------------------------------------------------

    def health(self, lane: Lane, now: float) -> tuple[str, list[str]]:
        """``down`` (red), ``unknown`` (grey: on the roster, never heard), ``warn`` (amber) or ``ok``,
        with what a person should notice."""
        status = lane.status
        if status is None:
            return "unknown", ["no status received"]
        if not status.online:
            return "down", ["offline"]
        notes = []
        if lane.status_at is not None and now - lane.status_at > self.stale_after:
            notes.append(f"silent for {int(now - lane.status_at)} s")
        if status.emergency:
            return "down", ["FIRE ALARM: lane released"]
        if status.mode and status.mode != "normal":
            notes.append(f"mode {status.mode}")
        if status.clock_synchronized is False:
            notes.append("clock not synchronized")
        if status.recovering:
            notes.append("recovering the venue's records")
        notes += [f"{name}: {problem or 'not healthy'}" for name, healthy, problem in status.readers if not healthy]
        if self.bundle_version is not None and (status.bundle_version or 0) < self.bundle_version:
            notes.append(f"old bundle {status.bundle_version or 0}")
        if status.conflicts:
            notes.append(f"{status.conflicts} conflict(s)")
        if status.counters.get("tamper"):
            notes.append("tamper")
        if self.roster and lane.gate not in self.roster:
            notes.append("not on the roster")
        elif lane.gate in self.roster and self.roster[lane.gate].retired:
            notes.append("retired")
        return ("warn" if notes else "ok"), notes

    def snapshot(self, now: float) -> dict[str, Any]:
        minute = int(now // 60)
        lanes = []
        chart = [self.per_minute.get(minute - CHART_MINUTES + 1 + i, 0) for i in range(CHART_MINUTES)]
        zones: dict[str, dict[str, Any]] = {}
        refusals: Counter[str] = Counter()
        for gate in sorted(self.lanes):
            lane = self.lanes[gate]
            health, notes = self.health(lane, now)
            status = lane.status
            row = self.roster.get(gate)
            zone = row.zone if row is not None and row.zone else None
            refusals.update(lane.refusals)
            lanes.append({
                "gate": gate,
                "zone": zone,
                "health": health,
                "notes": notes,
                "online": bool(status and status.online),
                "mode": status.mode if status else None,
                "clock": None if status is None or status.clock_synchronized is None else status.clock_synchronized,
                "bundle": status.bundle_version if status else None,
                "outbox": status.outbox if status else None,
                "readers": [name for name, healthy, _ in status.readers if healthy] if status else [],
                "version": status.version if status else None,
                "conflicts": status.conflicts if status else 0,
                "tamper": status.counters.get("tamper", 0) if status else 0,
                "status_age": round(now - lane.status_at, 1) if lane.status_at is not None else None,
                "last": _last_scan(lane, now),
                "entries": lane.entries,
                "exits": lane.exits,
                "forced": lane.forced,
                "refused": sum(lane.refusals.values()),
                "per_minute": lane.per_minute.get(minute - 1, 0),  # the last whole minute
                "this_minute": lane.per_minute.get(minute, 0),
            })
            if zone is not None:
                z = zones.setdefault(zone, {"zone": zone, "entries": 0, "exits": 0, "gates": 0, "per_minute": 0})
                z["entries"] += lane.entries
                z["exits"] += lane.exits
                z["gates"] += 1
                z["per_minute"] += lane.per_minute.get(minute - 1, 0)
        capacities = {**self.capacity, **self.bundle_capacity}
        for name in capacities:
            zones.setdefault(name, {"zone": name, "entries": 0, "exits": 0, "gates": 0, "per_minute": 0})
        for z in zones.values():
            z["occupancy"] = z["entries"] - z["exits"]
            capacity = capacities.get(z["zone"])
            z["capacity"] = capacity
            z["percent"] = round(100 * z["occupancy"] / capacity, 1) if capacity else None
            z["alarm"] = bool(capacity and z["occupancy"] >= capacity * self.alarm_percent / 100)
        counts = Counter(lane["health"] for lane in lanes)
        return {
            "venue": self.venue,
            "now": round(now, 3),
            "connected": self.connected,
            "bundle": self.bundle_version,
            "lanes": lanes,
            "zones": [zones[name] for name in sorted(zones)],
            "totals": {"lanes": len(lanes), "up": counts["ok"] + counts["warn"], "down": counts["down"],
                       "unknown": counts["unknown"], "entries": sum(lane["entries"] for lane in lanes),
                       "exits": sum(lane["exits"] for lane in lanes), "forced": sum(lane["forced"] for lane in lanes),
                       "conflicts": sum(lane["conflicts"] for lane in lanes),
                       "tamper": sum(1 for lane in lanes if lane["tamper"])},
            "refusals": dict(refusals.most_common()),
            "chart": chart,
            "alarm_percent": self.alarm_percent,
            "malformed": sum(self.malformed.values()),
            "commands": [dict(entry) for entry in self.commands],
        }


def _last_scan(lane: Lane, now: float) -> dict[str, Any] | None:
    scan = lane.last_scan
    if scan is None or lane.last_scan_at is None:
        return None
    return {"accepted": scan.accepted, "reason": scan.reason, "direction": scan.direction,
            "age": round(now - lane.last_scan_at, 1), "latency_ms": scan.latency_ms}
