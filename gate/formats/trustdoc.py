"""Reading trust documents strictly: every field typed, unknown fields refused, errors located.

A trust document is JSON (from a file, ``gate keys import`` or a signed bundle) and hostile
until parsed, like everything else a gate reads. ``Fields`` wraps one JSON object and raises
``TrustError`` with the path of the offending field (``pretix.checkin_list.limit_products[2]``).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Callable

from gate.formats import TrustError

_MISSING = object()


class Fields:
    """One JSON object read strictly. Subclasses set ``error`` to raise their own exception
    (``gate.sync.messages`` reads bus messages with it)."""

    error: type[Exception] = TrustError

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise self.error(f"{path}: must be an object")
        self.data = data
        self.path = path
        self._read: set[str] = {"format"}

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.error(f"{self.path}.{key}: required")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING, max_len: int = 256) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.error(f"{self.path}.{key}: must be text of 1-{max_len} characters")
        return value

    def integer(self, key: str, default: Any = _MISSING, minval: int | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or (minval is not None and value < minval):
            raise self.error(f"{self.path}.{key}: must be an integer" + (f" ≥ {minval}" if minval is not None else ""))
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{self.path}.{key}: must be true or false")
        return value

    def array(self, key: str, default: Any = _MISSING, max_len: int = 10_000_000) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, list) or len(value) > max_len:
            raise self.error(f"{self.path}.{key}: must be an array (at most {max_len} items)")
        return value

    def texts(self, key: str, default: Any = _MISSING, max_len: int = 256) -> Any:
        values = self.array(key, default)
        if values is default:
            return values
        for i, item in enumerate(values):
            if not isinstance(item, str) or not item or len(item) > max_len:
                raise self.error(f"{self.path}.{key}[{i}]: must be text of 1-{max_len} characters")
        return values

    def integers(self, key: str, default: Any = _MISSING) -> Any:
        values = self.array(key, default)
        if values is default:
            return values
        for i, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.error(f"{self.path}.{key}[{i}]: must be an integer")
        return values

    def objects(self, key: str, default: Any = _MISSING) -> Any:
        values = self.array(key, default)
        if values is default:
            return values
        return [type(self)(item, f"{self.path}.{key}[{i}]") for i, item in enumerate(values)]

    def obj(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        return type(self)(value, f"{self.path}.{key}")

    def hex_bytes(self, key: str, default: Any = _MISSING, length: int | None = None) -> Any:
        value = self.text(key, default, max_len=4096)
        if value is default:
            return value
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise self.error(f"{self.path}.{key}: must be hexadecimal") from None
        if length is not None and len(raw) != length:
            raise self.error(f"{self.path}.{key}: must be {length} bytes ({2 * length} hex digits)")
        return raw

    def accept_rest(self) -> None:
        """Every field is known (a map keyed by data, or a vendor's object with extra fields)."""
        self._read.update(self.data)

    def done(self) -> None:
        """Unknown fields are errors: a typo must not silently drop a restriction."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise self.error(f"{self.path}: unknown field(s) {', '.join(unknown)}")


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
