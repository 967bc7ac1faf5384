"""One reader of a stranger's JSON (``gate.strictjson.load_object``) behind a ticket's JWS header,
a trust document and a dashboard's bus message: the same checks before ``json.loads``, the same
words, and never the text itself in them."""

from __future__ import annotations

import base64
import sys

import pytest

from gate import trust
from gate.dashboard import messages
from gate.formats import TrustError, Unreadable, jws
from gate.strictjson import load_object

SECRET = b'"ticket-secret-4711"'


@pytest.mark.parametrize("text, words", [
    (b"[" + SECRET + b"]", "must be a JSON object"),
    (b"{" + SECRET + b":", "not valid JSON (Expecting value at line 1 column 23)"),
    (b"\xff" + SECRET, "not valid JSON (not UTF-8 text)"),
    (b"[" * 10_000 + SECRET, "nested deeper than"),
    (b"1" * 5000, "not valid JSON"),  # past the parser's own digit limit
])
def test_a_ticket_header_a_trust_document_and_a_bus_message_are_refused_in_the_same_words(text: bytes, words: str) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)  # as py_ecc leaves it: the nesting check must hold without the recursion limit
    try:
        with pytest.raises(TrustError) as document:
            trust.parse_document(text, "hostile.json")
        with pytest.raises(messages.BadMessage) as message:
            messages.read_status(text, "lane-1")
        with pytest.raises(Unreadable) as header:
            jws._json_object(base64.urlsafe_b64encode(text).rstrip(b"=").decode(), "header")
    finally:
        sys.setrecursionlimit(limit)
    for caught, what in ((document, "hostile.json"), (message, "status"), (header, "header")):
        assert str(caught.value).startswith(f"{what}: {words}"), str(caught.value)
        assert b"ticket-secret" not in str(caught.value).encode()


def test_size_is_checked_before_anything_is_parsed() -> None:
    with pytest.raises(ValueError, match="^message: larger than 64 KiB$"):
        load_object(b" " * (64 * 1024 + 1), "message", max_depth=4, max_bytes=64 * 1024)
    with pytest.raises(messages.BadMessage, match="^status: larger than 64 KiB$"):
        messages.read_status(b"{" + b" " * messages.MAX_PAYLOAD + b"}", "lane-1")
    assert load_object('{"a": [1, {"b": 2}]}', "message", max_depth=3, max_bytes=100) == {"a": [1, {"b": 2}]}
