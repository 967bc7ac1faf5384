"""Tickets as the other systems make them, built with independent implementations (not gate's).

pretix: its ``Ticket`` protobuf as pretix declares it (proto3 ``optional`` fields) and Ed25519
from ``cryptography``; SafeTix: pyotp and a plain RFC 6238 routine for the padded variant;
Ethereum: eth-account's ``personal_sign``; proof tokens: PyJWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The real systems' outputs, byte for byte as shared/vectors has them (copied so that a clone
# runs alone; test_vectors_are_the_shared_ones checks they have not drifted).
VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"

# --- pretix ---------------------------------------------------------------------------------

_PRETIX_TICKET: Any = None


def _pretix_ticket_class() -> Any:
    """``message Ticket`` of pretix's ``pretix_sig1.proto``, proto3 optional fields included."""
    global _PRETIX_TICKET
    if _PRETIX_TICKET is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        fd = descriptor_pb2.FileDescriptorProto(name="pretix_sig1.proto", syntax="proto3")
        msg = fd.message_type.add(name="Ticket")
        F = descriptor_pb2.FieldDescriptorProto
        msg.field.add(name="seed", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
        msg.field.add(name="item", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
        msg.field.add(name="variation", number=3, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
        msg.field.add(name="subevent", number=4, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
        for index, (name, number) in enumerate((("validFromUnixTime", 5), ("validUntilUnixTime", 6))):
            msg.oneof_decl.add(name=f"_{name}")
            msg.field.add(name=name, number=number, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL,
                          oneof_index=index, proto3_optional=True)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fd)
        _PRETIX_TICKET = message_factory.GetMessageClass(pool.FindMessageTypeByName("Ticket"))
    return _PRETIX_TICKET


def pretix_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def pretix_valid_key(key: Ed25519PrivateKey) -> str:
    """One ``valid_keys.pretix_sig1`` entry as pretix publishes it: base64 of the PEM."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(pem).decode()


def pretix_secret(key: Ed25519PrivateKey, seed: str, item: int, variation: int = 0, subevent: int = 0,
                  valid_from: int | None = None, valid_until: int | None = None) -> str:
    ticket = _pretix_ticket_class()(seed=seed, item=item, variation=variation, subevent=subevent)
    if valid_from is not None:
        ticket.validFromUnixTime = valid_from
    if valid_until is not None:
        ticket.validUntilUnixTime = valid_until
    payload = ticket.SerializeToString()
    signature = key.sign(payload)
    raw = b"\x01" + struct.pack(">H", len(payload)) + struct.pack(">H", len(signature)) + payload + signature
    return base64.b64encode(raw).decode()[::-1]


# --- SafeTix-style TOTP ---------------------------------------------------------------------


def totp_code(key: bytes, unix: int) -> str:
    import pyotp

    return pyotp.TOTP(base64.b32encode(key).decode(), digits=6, interval=15).at(unix)


def totp_code_padded(key: bytes, unix: int) -> str:
    """The variant whose 8-byte counter is right-padded with zeros to the key length."""
    message = struct.pack(">Q", unix // 15).ljust(len(key), b"\0")
    digest = hmac.new(key, message, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 10**6)


# --- Ethereum-signed QR ---------------------------------------------------------------------

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def eth_qr(account: Any, contract: str, ticket_hash: bytes, unix: int) -> str:
    from eth_account.messages import encode_defunct
    from eth_utils import keccak

    inner = keccak(bytes.fromhex(contract[2:]) + ticket_hash + (unix // 60).to_bytes(32, "big"))
    signed = account.sign_message(encode_defunct(primitive=inner))
    signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])
    return signature.hex() + ticket_hash.hex()


def eth_high_s(code: str) -> str:
    """The same signature's malleated twin: s → n − s, v flipped. Valid ECDSA, refused by policy."""
    raw = bytes.fromhex(code)
    s = int.from_bytes(raw[32:64], "big")
    v = 55 - raw[64]  # 27 ↔ 28
    return (raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v]) + raw[65:]).hex()


# --- proof tokens ---------------------------------------------------------------------------


def jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def proof_token(key: Ed25519PrivateKey, kid: str, **claims: Any) -> str:
    import jwt

    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)))
