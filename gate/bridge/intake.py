"""How many of the lanes' refusals the bridge takes into its queue (as failed check-ins).

A lane publishes its refusals on ``scans/<gate>`` with its own broker login; a login stolen from
a Pi can publish them as fast as the broker takes them. Each one taken is a durable write on
paho's thread (the thread that takes the lanes' records too) and an upload to pretix: unbounded,
the queue grows without end and the check-ins wait. So, before a refusal is queued:

- **per lane, a token bucket** (``RATE`` a second sustained, ``BURST`` at once): a real lane
  refuses a person at most about once a second (a scan, the red light, the next person), so a
  lane above this is not turned-away people but a loop or a stolen login;
- **in all, a cap** on the failed-check-in jobs pending (``MAX_PENDING``, the store counts them).

A refusal beyond either is not queued: it is counted per lane and per why (``rate``, ``full``)
for the status and the metrics, and logged at most once per ``LOG_EVERY`` per lane. Nothing
else is capped: records (admissions, passages, reverts) never pass through here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RATE = 10.0  # refusals a second a lane's bucket refills: ten times what a lane refuses at its busiest
BURST = 100  # refusals a lane may send at once: a lane's QoS 0 scans after a hiccup, a group turned away
MAX_PENDING = 5000  # failed-check-in jobs pending in all: pretix on SQLite takes ~10 uploads a second,
#                     so about 8 minutes of backlog; beyond it pretix would only learn the flood
LOG_EVERY = 60.0  # seconds: at most one warning per lane in this long
RATE_LIMITED, FULL = "rate", "full"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; full at the start."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RefusalIntake:
    """The buckets of the lanes, and what was not queued. Called on paho's thread; read by the
    status loop (``status``), hence the lock."""

    def __init__(self, rate: float = RATE, burst: int = BURST, max_pending: int = MAX_PENDING,
                 log_every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_pending, self.log_every, self.clock = rate, burst, max_pending, log_every, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._dropped: dict[str, Counter[str]] = {}  # gate → why → count, since start
        self._unlogged: dict[str, Counter[str]] = {}  # gate → why → count since the gate's last warning
        self._logged_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, gate: str) -> bool:
        """Whether a refusal of ``gate`` may be queued now (takes a token); when not, it is
        counted as ``rate``. ``gate`` is the sender the broker vouched for (its topic), one of
        the roster: the buckets are as many as the lanes."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(gate)
            if bucket is None:
                bucket = self._buckets[gate] = TokenBucket(self.rate, self.burst, now)
            if bucket.take(now):
                return True
        self.dropped(gate, RATE_LIMITED)
        return False

    def dropped(self, gate: str, why: str) -> None:
        """A refusal of ``gate`` not queued, for ``why`` (``rate`` or ``full``)."""
        now = self.clock()
        with self._lock:
            self._dropped.setdefault(gate, Counter())[why] += 1
            unlogged = self._unlogged.setdefault(gate, Counter())
            unlogged[why] += 1
            last = self._logged_at.get(gate)
            if last is not None and now - last < self.log_every:
                return
            self._logged_at[gate] = now
            counts = dict(unlogged)
            unlogged.clear()
        log.warning("refusals not queued as failed check-ins gate=%s rate=%d full=%d within_s=%.0f "
                    "limit_per_s=%g burst=%d max_pending=%d", gate, counts.get(RATE_LIMITED, 0), counts.get(FULL, 0),
                    0.0 if last is None else now - last, self.rate, self.burst, self.max_pending)

    def status(self) -> dict[str, Any]:
        """The limits, and the refusals not queued since start per lane and why."""
        with self._lock:
            dropped = {gate: {RATE_LIMITED: c[RATE_LIMITED], FULL: c[FULL]} for gate, c in sorted(self._dropped.items())}
        return {"rate": self.rate, "burst": self.burst, "max_pending": self.max_pending, "dropped": dropped}
