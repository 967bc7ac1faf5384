"""gate's base45 decoder accepts and refuses exactly what the base45 package (RFC 9285) does."""

import os

import base45
import pytest

from gate.formats.b45 import b45decode


@pytest.mark.parametrize("length", [*range(0, 40), 135, 999])
def test_round_trip_with_the_reference_encoder(length: int) -> None:
    for _ in range(20):
        data = os.urandom(length)
        assert b45decode(base45.b45encode(data).decode()) == data


def test_rfc_9285_examples() -> None:
    assert b45decode("BB8") == b"AB"
    assert b45decode("%69 VD92EX0") == b"Hello!!"
    assert b45decode("UJCLQE7W581") == b"base-45"
    assert b45decode("QED8WEX0") == b"ietf!"


@pytest.mark.parametrize(
    "text",
    [
        "A",  # a lone character
        "GGW",  # 65535 + 1: a group larger than two bytes
        ":::",  # the largest group, 91124
        "U6",  # a final pair larger than one byte (256)
        "ab8",  # lower case is not in the alphabet
        "BB\u00e98",  # nor anything outside ASCII
        "BB8\x00",
    ],
)
def test_refuses_what_the_reference_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        base45.b45decode(text)
    with pytest.raises(ValueError, match="base45"):
        b45decode(text)


def test_a_line_end_is_refused_not_stripped() -> None:
    """The package strips a trailing newline; gate's scanner driver already framed the line."""
    with pytest.raises(ValueError, match="base45"):
        b45decode("BB8\n")


def test_every_three_character_group_matches_the_reference() -> None:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    for a in alphabet:
        for b in alphabet:
            for c in alphabet[::4] + ":":
                group = a + b + c
                try:
                    expected = base45.b45decode(group)
                except ValueError:
                    with pytest.raises(ValueError):
                        b45decode(group)
                else:
                    assert b45decode(group) == expected
