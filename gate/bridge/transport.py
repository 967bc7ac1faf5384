"""Which URLs the bridge may talk to in the clear.

Plain ``http://`` carries the pretix device token, the OPN API key and the webhooks' signed
bodies readable to anyone on the path, so it is taken only to this machine's loopback, or to
any host when the config says ``[bridge] allow_insecure = true`` (a lab, a test venue).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure(url: str, allow_insecure: bool) -> str | None:
    """Why ``url`` must not be used, or None: plain ``http://`` carries the pretix device
    token, the OPN API key and the webhooks' signed bodies in the clear, so it is taken only to
    this machine's loopback, or anywhere when the config says ``allow_insecure = true``."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        return (f"plain http:// to {parts.hostname} sends tokens and keys in the clear; use https://, "
                "or set [bridge] allow_insecure = true")
    return None
