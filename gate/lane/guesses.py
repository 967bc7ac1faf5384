"""Wrong codes per ticket: a limit on guessing.

A rotating code of six digits (the TOTP short form ``t::code``) is accepted when it is one of
about eight at that moment: about one guess in 125,000 gets in. At a scanner's speed that is
minutes. After ``MAX_WRONG`` wrong codes for one ticket within ``WINDOW`` seconds, that ticket's
codes are refused undecided for ``LOCKOUT`` seconds: guessing then takes weeks, while a guest
whose phone showed a stale code a few times only waits a minute. Kept in memory (a restart
forgets it; guessing through restarts is slower than the lockout). Pure: the engine asks.
"""

from __future__ import annotations

from collections import deque

MAX_WRONG = 5
WINDOW = 60.0
LOCKOUT = 60.0
MAX_TICKETS = 10_000  # tickets tracked at once: a flood of made-up tokens cannot grow memory


class WrongCodeLimit:
    def __init__(self, max_wrong: int = MAX_WRONG, window: float = WINDOW, lockout: float = LOCKOUT) -> None:
        self.max_wrong, self.window, self.lockout = max_wrong, window, lockout
        self._wrong: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, ticket_key: str, now: float) -> float:
        """Seconds until this ticket's codes are read again (0: they are)."""
        until = self._locked_until.get(ticket_key, 0.0)
        if until <= now:
            self._locked_until.pop(ticket_key, None)
            return 0.0
        return until - now

    def wrong(self, ticket_key: str, now: float) -> bool:
        """A wrong code for this ticket; True when that locks it."""
        if ticket_key not in self._wrong and len(self._wrong) >= MAX_TICKETS:
            self._wrong.pop(next(iter(self._wrong)))  # the oldest tracked
        times = self._wrong.setdefault(ticket_key, deque())
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        if len(times) < self.max_wrong:
            return False
        del self._wrong[ticket_key]
        self._locked_until[ticket_key] = now + self.lockout
        return True

    def right(self, ticket_key: str) -> None:
        self._wrong.pop(ticket_key, None)
