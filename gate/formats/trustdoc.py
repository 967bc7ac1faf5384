"""Reading trust documents strictly: every field typed, unknown fields refused, errors located.

A trust document is JSON (from a file, ``gate keys import`` or a signed bundle) and hostile
until parsed, like everything else a gate reads. ``Fields`` wraps one JSON object and raises
``TrustError`` with the path of the offending field (``pretix.checkin_list.limit_products[2]``).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Callable

from gate import strictjson
from gate.errors import TrustError


class Fields(strictjson.Fields):
    """A trust document's object, read strictly (refusals are ``TrustError``)."""

    error = TrustError

    def __init__(self, data: Any, path: str) -> None:
        super().__init__(data, path)
        self._read.add("format")


def add_unique(into: dict[Any, Any], items: dict[Any, Any], conflict: Callable[[Any], str]) -> None:
    """Merge ``items`` into ``into``; a key already there is a contradiction between documents."""
    for key, value in items.items():
        if key in into:
            raise TrustError(conflict(key))
        into[key] = value


def decode_key(value: str, what: str, length: int = 32) -> bytes:
    """A raw key written as hex or as base64 (standard or URL-safe, padding optional)."""
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) == 2 * length:
        return bytes.fromhex(value)
    try:
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text (which b64decode refuses with a plain ValueError)
        raise TrustError(f"{what}: not hex or base64") from None
    if len(raw) != length:
        raise TrustError(f"{what}: decodes to {len(raw)} bytes, expected {length}")
    return raw
