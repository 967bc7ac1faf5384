"""Limits checked before a hostile JSON text reaches ``json.loads``."""

from __future__ import annotations

import re

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
