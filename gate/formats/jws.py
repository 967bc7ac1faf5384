"""Short-lived proof tokens: compact JWS signed with EdDSA (the TicketKing pattern, DESIGN §4).

``base64url(header) . base64url(claims) . base64url(signature)``. The algorithm is pinned:
``EdDSA`` or ``Ed25519`` (RFC 9864) and nothing else, whatever the header asks (``none`` and
``HS256`` are the classic downgrades). The header must name a ``kid`` held for an issuer. The
claims ``iss``, ``aud`` (this venue or this gate), ``sub`` (the ticket), ``evt``, ``iat``,
``nbf``, ``exp`` and ``jti`` are required; a token may live at most ``max_lifetime`` seconds
(≈ 30 s is usual). Each ``jti`` opens a gate once: the ledger keeps it with the admission, so
it holds across restarts and, with venue sync, across gates. The ticket (``sub``) is then used
like any other.

Trust document (one per issuer; keys are RFC 8037 JWKs)::

    {"format": "jws", "issuer": "https://tickets.example", "max_lifetime": 120,
     "events": ["finals-2026"],
     "keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "2026-11", "x": "<base64url>"}]}
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from gate.decision import Claims, Denial, Proof, Reason, ticket_key
from gate.formats import Env, TicketFormat, TrustError, TrustFormat, Unreadable
from gate.formats.trustdoc import Fields, add_unique, decode_key
from gate.strictjson import load_object

NAME = "jws"
ALGORITHMS = ("EdDSA", "Ed25519")
MAX_TEXT = 8192
MAX_DEPTH = 8  # a token's header and claims nest a level or two; more is an attack on the parser
DEFAULT_MAX_LIFETIME = 120
_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REQUIRED_TEXT = ("iss", "sub", "evt", "jti")
REQUIRED_TIME = ("iat", "nbf", "exp")


# --- trust ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuerKey:
    kid: str
    issuer: str
    key: VerifyKey
    events: frozenset[str]
    max_lifetime: int


@dataclass
class JwsTrust:
    keys: dict[str, IssuerKey] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{len(self.keys)} keys of {len({k.issuer for k in self.keys.values()})} issuers"


def parse_trust(document: dict[str, Any], where: str) -> JwsTrust:
    doc = Fields(document, where)
    issuer = doc.text("issuer", max_len=1024)
    events = frozenset(doc.texts("events", []))
    max_lifetime = doc.integer("max_lifetime", DEFAULT_MAX_LIFETIME, minval=1)
    trust = JwsTrust()
    for jwk in doc.objects("keys"):
        if jwk.text("kty") != "OKP" or jwk.text("crv") != "Ed25519":
            raise TrustError(f"{jwk.path}: only Ed25519 keys (kty OKP, crv Ed25519)")
        kid = jwk.text("kid", max_len=256)
        raw = decode_key(jwk.text("x"), f"{jwk.path}.x")
        jwk.accept_rest()  # JWKs carry optional members (use, alg, key_ops)
        if "d" in jwk.data:
            raise TrustError(f"{jwk.path}: contains a private key (d); give the public key only")
        if kid in trust.keys:
            raise TrustError(f"{jwk.path}.kid: {kid!r} listed twice")
        trust.keys[kid] = IssuerKey(kid, issuer, VerifyKey(raw), events, max_lifetime)
    doc.done()
    return trust


def merge_trust(parts: list[JwsTrust]) -> JwsTrust:
    merged = JwsTrust()
    for part in parts:
        add_unique(merged.keys, part.keys, lambda kid: f"jws: kid {kid!r} is held for two issuers or twice")
    return merged


TRUST = TrustFormat(NAME, parse_trust, merge_trust)


# --- reading --------------------------------------------------------------------------------


def _b64url(segment: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise Unreadable(f"{what} is not base64url") from None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    # read before the signature is checked: a stranger's text (its size: MAX_TEXT, in recognises)
    return load_object(_b64url(segment, what), what, max_depth=MAX_DEPTH, error=Unreadable)


def _time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2**40


def recognises(text: str) -> bool:
    return len(text) <= MAX_TEXT and _SHAPE.fullmatch(text) is not None


def read(text: str, env: Env) -> Claims | Denial:
    try:
        return _read(text.strip(), env)
    except Unreadable as exc:
        return Denial(Reason.UNREADABLE, f"jws: {exc}")


def _read(text: str, env: Env) -> Claims | Denial:
    if not recognises(text):
        raise Unreadable("not a compact JWS")
    header_b64, claims_b64, signature_b64 = text.split(".")
    header = _json_object(header_b64, "header")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        return Denial(Reason.BAD_SIGNATURE, f"jws: algorithm {str(alg)[:16]!r} refused (EdDSA only)")
    if "crit" in header or "b64" in header:
        raise Unreadable("header asks for extensions this gate does not implement")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Unreadable("header has no kid")
    trust: JwsTrust = env.trust.get(NAME) or JwsTrust()
    key = trust.keys.get(kid)
    if key is None:
        return Denial(Reason.UNKNOWN_KEY, "jws: no key held with this kid")
    signature = _b64url(signature_b64, "signature")
    try:
        key.key.verify(f"{header_b64}.{claims_b64}".encode("ascii"), signature)
    except (BadSignatureError, ValueError):
        return Denial(Reason.BAD_SIGNATURE, "jws: signature does not verify")

    claims = _json_object(claims_b64, "claims")
    for name in REQUIRED_TEXT:
        if not isinstance(claims.get(name), str) or not claims[name] or len(claims[name]) > 1024:
            raise Unreadable(f"claim {name} is required text")
    for name in REQUIRED_TIME:
        if not _time(claims.get(name)):
            raise Unreadable(f"claim {name} is a required time")
    if claims["iss"] != key.issuer:
        return Denial(Reason.UNKNOWN_KEY, "jws: key is held for another issuer")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise Unreadable("claim aud is required text or a list of text")
    if not {env.venue, env.gate_id} & set(audiences) - {""}:
        return Denial(Reason.WRONG_EVENT, "jws: token is for another venue or gate")
    if key.events and claims["evt"] not in key.events:
        return Denial(Reason.UNKNOWN_KEY, "jws: key may not sign this event")
    iat, nbf, exp = claims["iat"], claims["nbf"], claims["exp"]
    if exp - iat > key.max_lifetime or exp < nbf:
        return Denial(Reason.STALE_PROOF, f"jws: token lives {int(exp - iat)} s, more than {key.max_lifetime} s")
    leeway = env.proof_max_ahead
    if env.now + leeway < nbf or env.now + leeway < iat:
        return Denial(Reason.NOT_YET_VALID, "jws: token not valid yet")
    if env.now - leeway >= exp:
        return Denial(Reason.STALE_PROOF, f"jws: token expired {int(env.now - exp)} s ago")
    return Claims(
        format=NAME,
        ticket_key=ticket_key(NAME, f"{claims['iss']}\0{claims['sub']}"),
        event=claims["evt"],
        issuer=claims["iss"],
        kid=kid,
        proof=Proof(NAME, int(iat), ticket_key(f"{NAME}-jti", f"{claims['iss']}\0{claims['jti']}")),
    )


def ticket_key_of(text: str) -> str | None:
    """The ticket a token speaks for (``iss`` + ``sub``), read without verifying."""
    try:
        if not recognises(text.strip()):
            return None
        claims = _json_object(text.strip().split(".")[1], "claims")
    except Unreadable:
        return None
    if isinstance(claims.get("iss"), str) and isinstance(claims.get("sub"), str):
        return ticket_key(NAME, f"{claims['iss']}\0{claims['sub']}")
    return None


FORMAT = TicketFormat(NAME, recognises, read, ticket_key_of)
