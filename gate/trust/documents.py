"""The trust a gate holds: each format's keys, lists and settings, from JSON trust documents.

A trust document is one JSON object with a ``"format"`` (``gt1``, ``pretix``, ``totp``,
``eth_qr``, ``jws``) and that format's fields (see docs/trust-documents.md). Documents come
from files named in the config (``[trust] files``), from ``gate keys import`` (kept in the
database, picked up by a running daemon) and, with venue sync, from signed bundles. Each
format's module parses and merges its own documents; this module only dispatches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gate import formats
from gate.formats import TrustError
from gate.strictjson import load_object

MAX_DOCUMENT_DEPTH = 16  # the deepest format (pretix) nests 4 levels
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # a million pretix secrets is about 60 MB of JSON


@dataclass(frozen=True)
class TrustDocument:
    name: str  # where it came from: a file path or the name it was imported under
    format: str
    body: dict[str, Any]
    material: Any = field(default=None, compare=False, repr=False)  # what the format parsed


def parse_document(data: bytes | str, name: str) -> TrustDocument:
    """Read and validate one document; ``TrustError`` names the document and the field."""
    body = load_object(data, name, max_depth=MAX_DOCUMENT_DEPTH, max_bytes=MAX_DOCUMENT_BYTES, error=TrustError)
    return document_from(body, name)


def parse_stored(rows: Iterable[tuple[str, str]]) -> list[TrustDocument]:
    """The documents a store holds (``TrustStore.documents``: name and JSON text), parsed again
    (they were valid when stored; ``TrustError`` if one no longer is)."""
    return [parse_document(text, name) for name, text in rows]


def document_from(body: Any, name: str) -> TrustDocument:
    """Validate a document already parsed from JSON (one of a signed bundle's)."""
    if not isinstance(body, dict):
        raise TrustError(f"{name}: must be a JSON object")
    fmt = body.get("format")
    if not isinstance(fmt, str) or fmt not in formats.TRUST_FORMATS:  # a list here is not hashable
        raise TrustError(f"{name}: \"format\" must be one of {', '.join(formats.TRUST_FORMATS)}, got {fmt!r}")
    try:  # parsed once, here: a bad document is refused where it is brought in
        material = formats.trust_format(fmt).parse(body, fmt)
    except TrustError as exc:
        raise TrustError(f"{name}: {exc}") from None
    return TrustDocument(name, fmt, body, material)


def build(documents: list[TrustDocument], gt1_keys: dict[bytes, Any] | None = None) -> dict[str, Any]:
    """Everything the formats consult (``Env.trust``), merged per format."""
    parts: dict[str, list[Any]] = {}
    if gt1_keys:
        parts.setdefault("gt1", []).append(gt1_keys)
    for document in documents:
        parts.setdefault(document.format, []).append(document.material)
    return {name: formats.trust_format(name).merge(items) for name, items in parts.items()}


def summary(trust: dict[str, Any]) -> dict[str, str]:
    """One short line per format for logs and ``check-config`` (counts, never key material)."""
    lines = {}
    for name, material in trust.items():
        describe = getattr(material, "describe", None)
        lines[name] = describe() if describe else f"{len(material)} keys"
    return lines
