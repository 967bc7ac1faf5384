"""The gate's own exceptions: one base, and the few kinds that callers tell apart.

Every refusal of hostile or wrong input is a ``GateError`` whose message names what was wrong
(the field, the file, the key). Anything else that escapes is a bug: the decision loop denies
with ``error`` and goes on, and the CLI shows a traceback.
"""

from __future__ import annotations


class GateError(Exception):
    """Something the gate refuses, with a message that says what and why."""


class ConfigError(GateError):
    """The config file is not what ``gate.config`` expects; every problem is collected."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class TrustError(GateError, ValueError):
    """A trust document is not what its format expects; the message says where and why."""


class Unreadable(GateError, ValueError):
    """Scanned text (or an NFC answer) that is not what its format says it is."""


class SignedError(GateError, ValueError):
    """A signed message that must not be acted on. ``kind`` is a short word for counters and
    replies (``malformed``, ``unsigned``, ``wrong_key``, ``bad_signature``, ``wrong_venue``,
    ``wrong_type``, and the appliers' own: ``older``, ``stale``, ``replayed``, ...)."""

    def __init__(self, kind: str, message: str, nonce: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.nonce = nonce  # a command's, when it could be read (so that the sender can match the reply)


class MessageError(GateError, ValueError):
    """A bus message that is not what the spec says; the text names the field."""


class Refused(GateError):
    """A command the lane cannot carry out now (the text says why)."""


class UsageError(GateError):
    """The ``gate`` command was called wrongly (exit 2); the text says how."""
