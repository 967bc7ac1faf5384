"""Who may see the dashboard: users from the config with scrypt password hashes (the standard
library's ``hashlib.scrypt``; no password is ever stored or logged), server-side sessions behind
a random cookie, a CSRF token per session for every POST, and a brake on guessing.

Sessions live in memory: restarting the dashboard logs everyone out, which is fine for a
control-room screen and keeps no secret on disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from gate.dashboard.settings import User

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB, ~50 ms on a Pi 4: cheap for one login, dear for a guesser
MAX_FAILURES = 5  # per client address and minute
FAILURE_WINDOW = 60.0  # seconds
MAX_CLIENTS = 10_000  # addresses remembered by the brake (the least recently seen are forgotten first)
COOKIE = "gate_dashboard"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash``, as ``[[users]] password_hash`` holds it."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class TooManyAttempts(Exception):
    """This address has used its attempts of the minute: no password is even checked."""


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: float


class Auth:
    def __init__(self, users: tuple[User, ...], session_hours: float) -> None:
        self.users = {user.name: user for user in users}
        self.lifetime = session_hours * 3600
        self._sessions: dict[str, Session] = {}
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # least recently seen first
        self._lock = threading.Lock()
        # a name that is not a user still costs one scrypt: the answer's time does not tell names apart
        self._dummy = hash_password(secrets.token_hex(8))

    def throttled(self, client: str, now: float | None = None) -> bool:
        """Whether ``client`` has used its attempts of the minute (a look only: ``login`` decides)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            attempts = self._attempts_of(client, now)
            return attempts is not None and len(attempts) >= MAX_FAILURES

    def login(self, name: str, password: str, client: str) -> str | None:
        """A new session's token, or None (and the failure counted against ``client``).

        The attempt is counted *before* the password is checked, under the lock: parallel
        requests from one address each take one of its ``MAX_FAILURES`` attempts of the minute,
        so they cannot all pass a check made before the (slow) scrypt. A success gives its
        attempt back. Raises ``TooManyAttempts`` when none is left."""
        now = time.monotonic()
        with self._lock:
            attempts = self._attempts_of(client, now)
            if attempts is None:
                attempts = self._failures[client] = deque()
                while len(self._failures) > MAX_CLIENTS:
                    self._failures.popitem(last=False)
            if len(attempts) >= MAX_FAILURES:
                raise TooManyAttempts(client)
            attempts.append(now)
        user = self.users.get(name)
        ok = verify_password(password, user.password_hash if user else self._dummy) and user is not None
        with self._lock:
            if not ok:
                return None
            attempts = self._failures.get(client)
            if attempts is not None:
                try:
                    attempts.remove(now)
                except ValueError:
                    pass
                if not attempts:
                    del self._failures[client]
            token = secrets.token_urlsafe(32)
            self._sessions[token] = Session(name, secrets.token_urlsafe(24), time.time() + self.lifetime)
            self._expire()
        return token

    def _attempts_of(self, client: str, now: float) -> deque[float] | None:
        """The client's attempts of the last minute (None: none); empty entries are dropped.
        Call under the lock."""
        attempts = self._failures.get(client)
        if attempts is None:
            return None
        while attempts and now - attempts[0] > FAILURE_WINDOW:
            attempts.popleft()
        if not attempts:
            del self._failures[client]
            return None
        self._failures.move_to_end(client)
        return attempts

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires < time.time():
                self._sessions.pop(token, None)
                return None
            return session

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def _expire(self) -> None:
        now = time.time()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]
