"""What the NFC tests share: a free port for nfcpy's ``udp`` driver (the reader sends to it, the
simulated card listens on it)."""

from __future__ import annotations

import socket


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
