"""Reading hostile JSON strictly: limits checked before a text reaches ``json.loads``, and
``Fields``, which reads one parsed object field by field (every field typed, unknown fields
refused, errors naming the path of the offending field, ``pretix.checkin_list.limit_products[2]``).
``load_object`` is the step before: size, nesting, ``json.loads`` and "is it an object", with
one set of messages. Trust documents, signed messages and bus messages are all read with it."""

from __future__ import annotations

import json
import re
from typing import Any

# Unrolled (a run of plain characters, then escapes each followed by a run): 15× faster than
# an alternation per character on the multi-megabyte strings of a revocation bundle.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_STRING_TEXT = re.compile(_JSON_STRING.pattern.decode())
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


def nesting(text: bytes | str, limit: int) -> int:
    """How deep arrays and objects nest (strings left out), counted up to ``limit + 1``.

    A payload of 100,000 '[' must never reach a recursive parser: ``json`` guards itself with
    the recursion limit, but a library may raise that limit (py_ecc sets it to 100,000) and then
    the C stack overflows and the process dies. Gate's messages and documents nest a few levels.
    """
    if isinstance(text, str):  # strings out first: what is left is small, and no copy of a big text
        rest = _JSON_STRING_TEXT.sub("", text).encode("utf-8", "surrogatepass")
    else:
        rest = _JSON_STRING.sub(b"", text)
    depth = deepest = 0
    for char in rest.translate(None, _NOT_BRACKET):
        depth += 1 if char in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _size(limit: int) -> str:
    if limit % 2**20 == 0:
        return f"{limit // 2**20} MiB"
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit:,} bytes"


def load_object(data: bytes | str, what: str, *, max_depth: int, max_bytes: int | None = None,
                error: type[Exception] = ValueError) -> dict[str, Any]:
    """One JSON object from a stranger's text, or ``error`` naming ``what`` and what is wrong.

    The size (``max_bytes``: of the text as given, bytes or characters) and the nesting are
    checked before the text reaches ``json.loads``; the message never quotes the text (it may
    be a ticket or a secret)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{what}: larger than {_size(max_bytes)}")
    if nesting(data, max_depth) > max_depth:
        raise error(f"{what}: nested deeper than {max_depth} levels")
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise error(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{what}: not valid JSON (not UTF-8 text)") from None
    except (ValueError, RecursionError):  # the parser's own limits (a number of 5,000 digits)
        raise error(f"{what}: not valid JSON") from None
    if not isinstance(value, dict):
        raise error(f"{what}: must be a JSON object")
    return value


_MISSING = object()


class Fields:
    """One JSON object read strictly. Subclasses set ``error`` to raise their own exception
    (trust documents raise ``TrustError``, bus messages ``MessageError``)."""

    error: type[Exception] = ValueError

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise self.error(f"{path}: must be an object")
        self.data = data
        self.path = path
        self._read: set[str] = set()

    def get(self, key: str, default: Any) -> Any:
        """The value as it is (marked read); ``default`` when absent or null, else required."""
        self._read.add(key)
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.error(f"{self.path}.{key}: required")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING, max_len: int = 256) -> Any:
        value = self.get(key, default)
        if value is default:
            return value
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.error(f"{self.path}.{key}: must be text of 1-{max_len} characters")
        return value

    def integer(self, key: str, default: Any = _MISSING, minval: int | None = None) -> Any:
        value = self.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or (minval is not None and value < minval):
            raise self.error(f"{self.path}.{key}: must be an integer" + (f" ≥ {minval}" if minval is not None else ""))
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{self.path}.{key}: must be true or false")
        return value

    def array(self, key: str, default: Any = _MISSING, max_len: int = 10_000_000) -> Any:
        value = self.get(key, default)
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
        value = self.get(key, default)
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
