"""The command audit log: one JSON line per step of every command (asked, confirmed and sent,
refused, answered), on disk before the command goes out (``fsync``), readable by the dashboard's
user alone. It names who, what, which gate and the nonce; never a password or a key."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"at": round(time.time(), 3), "event": event, **fields}, separators=(",", ":"), default=str)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
