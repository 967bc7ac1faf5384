"""A scripted crowd: people with the tickets a venue night brings, good and bad.

Tickets come from the real ``gate`` command line (keygen, issue, wallet), as a box office and
phones would make them; the crowd only knows how to show them and whether it walks through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import base45


@dataclass(frozen=True)
class Person:
    label: str
    ticket: str | None  # None: pushes through without scanning
    walks: bool = True
    expect: str = "ok"  # the reason code the lane should give
    pulls_fire_alarm: bool = False


def _gate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gate", *args], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def _forge(ticket: str) -> str:
    """Flip one byte inside the signed payload: what a forger editing a ticket gets."""
    cose = bytearray(base45.b45decode(ticket[len("GT1:") :]))
    cose[len(cose) // 2] ^= 0x01
    return "GT1:" + base45.b45encode(bytes(cose)).decode()


def make_keys(workdir: Path) -> dict[str, str]:
    issuer = json.loads(_gate("keygen", "--out", str(workdir / "issuer.key")))
    _gate("keygen", "--out", str(workdir / "phone.key"))
    json.loads(_gate("keygen", "--out", str(workdir / "stranger.key")))
    return {"issuer_public": issuer["public_key"]}


def refunded_ticket(workdir: Path, event: str) -> str:
    """A ticket that was refunded: the demo revokes it before the doors open."""
    return _gate("issue", "--key", str(workdir / "issuer.key"), "--event", event, "--class", "refunded")


def crowd(workdir: Path, event: str, revoked_ticket: str) -> list[Person]:
    key, phone, stranger = (str(workdir / n) for n in ("issuer.key", "phone.key", "stranger.key"))
    now = int(time.time())

    def issue(*args: str) -> str:
        return _gate("issue", "--key", key, "--event", event, *args)

    paper = issue("--class", "standing")
    shared = issue("--class", "standing")
    bound = issue("--class", "seated", "--holder-key", phone)
    walker = issue("--class", "standing")
    return [
        Person("Ada, paper ticket", paper),
        Person("Ben, phone with a rotating code", _gate("wallet", "--ticket", bound, "--holder-key", phone)),
        Person("Cleo, screenshot of Ada's ticket", paper, expect="already_used"),
        Person("Dan, screenshot of a rotating code taken a minute ago",
               _gate("wallet", "--ticket", bound, "--holder-key", phone, "--at", str(now - 60)), expect="stale_proof"),
        Person("Eve, phone ticket printed on paper (no rotating code)", bound, expect="stale_proof"),
        Person("Finn, edited ticket (forged)", _forge(issue("--class", "standing")), expect="bad_signature"),
        Person("Gus, ticket from a reseller's own key",
               _gate("issue", "--key", stranger, "--event", event), expect="unknown_key"),
        Person("Hana, yesterday's ticket", issue("--expires", str(now - 86400)), expect="expired"),
        Person("Ivo, ticket for next week", issue("--not-before", str(now + 7 * 86400)), expect="not_yet_valid"),
        Person("Jo, ticket for another event", _gate("issue", "--key", key, "--event", "other-event"), expect="wrong_event"),
        Person("Kim, refunded (revoked) ticket", revoked_ticket, expect="revoked"),
        Person("Lou, a supermarket barcode", "4006381333931", expect="unknown_format"),
        Person("Max, scans then turns away", walker, walks=False),
        Person("Max again, walks through this time", walker),
        Person("Ned, climbs over without a ticket", None, expect="forced_passage"),
        Person("Ola, right behind Ned", shared),
        Person("(fire alarm)", None, pulls_fire_alarm=True, expect="emergency"),
        Person("Pia, scans during the alarm", issue("--class", "standing"), walks=False, expect="emergency"),
        Person("(alarm cleared)", None, pulls_fire_alarm=True, expect="normal"),
        Person("Quinn, after the alarm", issue("--class", "standing")),
    ]
