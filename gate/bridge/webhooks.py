"""Outbound webhooks in the Standard Webhooks format (https://www.standardwebhooks.com/):

    webhook-id: <the message id, the same on every retry of one message>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">

with the venue's secret given as ``whsec_<base64>`` (the spec's form). Receivers verify with
any Standard Webhooks library; the suite does it with the ``standardwebhooks`` package. The body
names no ticket text, only the ledger's ticket key (a SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from gate import __version__

PREFIX = "whsec_"


class WebhookError(Exception):
    pass


def secret_bytes(text: str) -> bytes:
    """``whsec_<base64>`` (or bare base64) → the HMAC key; at least 24 bytes."""
    text = text.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("webhook secret: whsec_ followed by base64") from None
    if len(raw) < 24:
        raise WebhookError("webhook secret: at least 24 bytes (192 bits)")
    return raw


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(kind: str, at: float, data: dict[str, Any]) -> bytes:
    """The spec's recommended shape: ``type``, ``timestamp`` (ISO 8601), ``data``."""
    from gate.bridge.pretix import iso

    return json.dumps({"type": kind, "timestamp": iso(at), "data": data}, separators=(",", ":")).encode()


class Sender:
    def __init__(self, url: str, secret: bytes, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.http = httpx.Client(timeout=timeout, follow_redirects=False,
                                 headers={"User-Agent": f"gate-bridge/{__version__}", "Content-Type": "application/json"})

    def close(self) -> None:
        self.http.close()

    def deliver(self, msg_id: str, body: bytes) -> None:
        """One attempt; ``WebhookError`` unless the receiver answered 2xx."""
        now = int(time.time())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": sign(self.secret, msg_id, now, body)}
        try:  # only the status matters: the receiver's body is never read
            with self.http.stream("POST", self.url, content=body, headers=headers) as answer:
                status = answer.status_code
        except httpx.HTTPError as exc:
            raise WebhookError(f"receiver not reached ({exc.__class__.__name__})") from None
        if not 200 <= status < 300:
            raise WebhookError(f"receiver answered HTTP {status}")
