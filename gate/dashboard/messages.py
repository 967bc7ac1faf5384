"""What the dashboard reads from the venue bus, as values: every payload hostile until read here.

Pure functions. A lane's status, a decision on ``scans/<gate>`` and a command's answer are read
field by field: sizes and nesting are checked before ``json.loads``, each field is typed and
bounded, unknown fields are ignored (a newer lane may say more; the dashboard shows what it
knows), and a payload that is not what docs/mqtt.md says raises ``BadMessage``, which the hub
counts and logs, and the page goes on. Ledger records and the signed bundle are read by the
lane's own code (``gate.trust.records``, ``gate.trust.signed``): the dashboard counts only
records that its gate's key signed, from gates on the admin's roster.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from gate.strictjson import load_object

MAX_PAYLOAD = 64 * 1024  # a status is about 1 kB
MAX_DEPTH = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_CODE = re.compile(r"^[a-z][a-z0-9_.]{0,63}\Z")  # reason codes, counter names, formats, modes
_LATEST = 2**53


class BadMessage(ValueError):
    """A bus payload that is not what docs/mqtt.md says (the text names the field)."""


@dataclass(frozen=True)
class LaneStatus:
    gate: str
    online: bool
    mode: str | None = None
    emergency: bool = False
    clock_synchronized: bool | None = None
    bundle_version: int | None = None
    delta_version: int | None = None
    outbox: int | None = None
    conflicts: int = 0
    version: str | None = None
    readers: tuple[tuple[str, bool, str], ...] = ()  # (name, healthy, problem)
    counters: dict[str, int] = field(default_factory=dict)
    recovering: bool = False
    refused_records: int = 0
    at: float | None = None  # the lane's own clock when it published


@dataclass(frozen=True)
class Scan:
    gate: str
    accepted: bool
    reason: str
    format: str | None
    direction: str
    latency_ms: float | None


@dataclass(frozen=True)
class CommandResult:
    gate: str
    nonce: str | None
    ok: bool
    text: str
    kind: str | None


def _load(payload: bytes, what: str) -> dict[str, Any]:
    return load_object(payload, what, max_depth=MAX_DEPTH, max_bytes=MAX_PAYLOAD, error=BadMessage)


def _gate(data: dict[str, Any], topic_gate: str, what: str) -> str:
    gate = data.get("gate")
    if gate != topic_gate:
        raise BadMessage(f"{what}.gate: {str(gate)[:64]!r} sent on {topic_gate!r}'s topic")
    return gate


def _opt(data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadMessage(f"{what}.{key}: wrong type")
    if not isinstance(value, kind):
        raise BadMessage(f"{what}.{key}: wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadMessage(f"{what}.{key}: not a finite number")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < _LATEST:
        raise BadMessage(f"{what}.{key}: out of range")
    if isinstance(value, str) and len(value) > 256:
        raise BadMessage(f"{what}.{key}: too long")
    return value


def _code(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise BadMessage(f"{what}: not a code")
    return value


def read_status(payload: bytes, topic_gate: str) -> LaneStatus:
    """A lane's retained status (``gates/<gate>/status``): online with its fields, or offline
    (what it says when it stops, and what the broker says for it as its Last Will)."""
    what = "status"
    data = _load(payload, what)
    if data.get("v") != 2:
        raise BadMessage("status.v: not protocol 2")
    gate = _gate(data, topic_gate, what)
    state = data.get("state")
    if state == "offline":
        return LaneStatus(gate, online=False)
    if state != "online":
        raise BadMessage("status.state: must be online or offline")
    mode = _opt(data, "mode", str, what)
    if mode is not None:
        _code(mode, "status.mode")
    clock = _opt(data, "clock", dict, what) or {}
    bundle = _opt(data, "bundle", dict, what) or {}
    sync = _opt(data, "sync", dict, what) or {}
    counters: dict[str, int] = {}
    for name, value in (_opt(data, "counters", dict, what) or {}).items():
        if len(counters) >= 64:
            break
        if isinstance(name, str) and _CODE.match(name) and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _LATEST:
            counters[name] = value
    readers = []
    for name, reader in list((_opt(data, "readers", dict, what) or {}).items())[:8]:
        if not isinstance(name, str) or not _CODE.match(name) or not isinstance(reader, dict):
            raise BadMessage("status.readers: not reader states")
        problem = reader.get("problem")
        connected = reader.get("connected")
        healthy = problem is None and connected is not False
        readers.append((name, healthy, str(problem)[:120] if problem is not None else ("not connected" if connected is False else "")))
    version = _opt(data, "version", str, what)
    return LaneStatus(
        gate=gate,
        online=True,
        mode=mode,
        emergency=_opt(data, "emergency", bool, what) or False,
        clock_synchronized=_opt(clock, "synchronized", bool, "status.clock"),
        bundle_version=_opt(bundle, "version", int, "status.bundle"),
        delta_version=_opt(bundle, "delta", int, "status.bundle"),
        outbox=_opt(data, "outbox", int, what),
        conflicts=_opt(data, "conflicts", int, what) or 0,
        version=version[:32] if version else None,
        readers=tuple(readers),
        counters=counters,
        recovering=bool(_opt(data, "recovering", str, what)) or bool(_opt(data, "held", str, what)),
        refused_records=_opt(sync, "refused", int, "status.sync") or 0,
        at=_opt(data, "at", (int, float), what),
    )


def read_scan(payload: bytes, topic_gate: str) -> Scan:
    """A decision on ``scans/<gate>`` (QoS 0: a lost one costs nothing)."""
    what = "scan"
    data = _load(payload, what)
    gate = _gate(data, topic_gate, what)
    accepted = data.get("accepted")
    if not isinstance(accepted, bool):
        raise BadMessage("scan.accepted: must be true or false")
    reason = _code(data.get("reason"), "scan.reason")
    fmt = _opt(data, "format", str, what)
    direction = data.get("direction", "in")
    if direction not in ("in", "out"):
        raise BadMessage("scan.direction: in or out")
    latency = _opt(data, "latency_ms", (int, float), what)
    return Scan(gate, accepted, reason, _code(fmt, "scan.format") if fmt else None, direction,
                float(latency) if latency is not None else None)


def read_command_result(payload: bytes, topic_gate: str) -> CommandResult:
    """A lane's answer to a signed command (``gates/<gate>/cmd/result``)."""
    what = "command result"
    data = _load(payload, what)
    gate = _gate(data, topic_gate, what)
    ok = data.get("ok")
    if not isinstance(ok, bool):
        raise BadMessage("command result.ok: must be true or false")
    nonce = _opt(data, "nonce", str, what)
    text = _opt(data, "result" if ok else "error", str, what) or ""
    kind = _opt(data, "kind", str, what)
    return CommandResult(gate, nonce, ok, text[:200], _code(kind, "command result.kind") if kind else None)


def topic_gate(topic: str, prefix: str, suffix: str = "") -> str | None:
    """The gate id in ``<prefix><gate><suffix>``, or None when the topic is not that shape."""
    if not topic.startswith(prefix) or not topic.endswith(suffix):
        return None
    name = topic[len(prefix) : len(topic) - len(suffix)] if suffix else topic[len(prefix) :]
    return name if _NAME.match(name) else None
