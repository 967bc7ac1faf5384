"""Ethereum-signed dynamic QR codes, the crypto.tickets pattern (DESIGN §4).

The holder's wallet shows 194 hex digits: a 65-byte signature ``r ‖ s ‖ v`` (v 27 or 28) and
the 32-byte ticket hash. The wallet signed, EIP-191 ``personal_sign``, the 32 bytes
``keccak256(contract(20) ‖ ticket_hash(32) ‖ uint256(floor(unix / 60)))``. The gate recovers
the signer's address (secp256k1) for the minutes m−1, m and m+1 and compares it with the
ticket's owner in its offline ownership snapshot. High-s signatures are refused (they are the
malleated twin of a valid one).

Trust document (one per contract, the ownership snapshot taken before doors open)::

    {"format": "eth_qr", "event": "expo-2026", "contract": "0x<40 hex>",
     "owners": {"<64 hex ticket hash>": "0x<40 hex owner address>", ...}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gate.decision import Claims, Denial, Proof, Reason, ticket_key
from gate.formats import Env, TicketFormat, TrustError, TrustFormat
from gate.formats.trustdoc import Fields

NAME = "eth_qr"
TEXT_LENGTH = 194
MINUTE = 60
STALE_SEARCH = 10  # minutes searched back to tell an old screenshot from a forgery
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX = re.compile(r"[0-9a-fA-F]{194}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")


def keccak256(data: bytes) -> bytes:
    from Crypto.Hash import keccak  # pycryptodome; loaded only where this format is enabled

    return keccak.new(data=data, digest_bits=256).digest()


def signed_digest(contract: bytes, ticket_hash: bytes, minute: int) -> bytes:
    """The 32-byte hash the wallet's ``personal_sign`` covers, already EIP-191 prefixed."""
    inner = keccak256(contract + ticket_hash + minute.to_bytes(32, "big"))
    return keccak256(b"\x19Ethereum Signed Message:\n32" + inner)


def recover_address(digest: bytes, signature: bytes) -> bytes | None:
    """The address that made ``signature`` (r ‖ s ‖ v) over ``digest``, or None."""
    from coincurve import PublicKey

    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest, hasher=None)
    except Exception:  # not a point on the curve: no signer
        return None
    return keccak256(public.format(compressed=False)[1:])[-20:]


# --- trust ----------------------------------------------------------------------------------


@dataclass
class Contract:
    address: bytes
    event: str
    owners: dict[bytes, bytes] = field(default_factory=dict)  # ticket hash → owner address


@dataclass
class EthTrust:
    contracts: list[Contract] = field(default_factory=list)
    by_ticket: dict[bytes, list[Contract]] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{len(self.contracts)} contracts, {len(self.by_ticket)} tickets"


def parse_trust(document: dict[str, Any], where: str) -> EthTrust:
    doc = Fields(document, where)
    event = doc.text("event")
    address = doc.text("contract", max_len=42)
    if not _ADDRESS.fullmatch(address):
        raise TrustError(f"{where}.contract: must be 0x and 40 hex digits")
    owners = doc.obj("owners")
    contract = Contract(bytes.fromhex(address[2:]), event)
    for ticket_hash, owner in owners.data.items():
        if not _HASH.fullmatch(ticket_hash) or not isinstance(owner, str) or not _ADDRESS.fullmatch(owner):
            raise TrustError(f"{owners.path}: entries must be \"<64 hex ticket hash>\": \"0x<40 hex address>\"")
        contract.owners[bytes.fromhex(ticket_hash.removeprefix("0x"))] = bytes.fromhex(owner[2:])
    owners.accept_rest()
    doc.done()
    return merge_trust([EthTrust([contract])])


def merge_trust(parts: list[EthTrust]) -> EthTrust:
    merged = EthTrust()
    for part in parts:
        for contract in part.contracts:
            if any(c.address == contract.address for c in merged.contracts):
                raise TrustError(f"eth_qr: contract 0x{contract.address.hex()} has two snapshots")
            merged.contracts.append(contract)
            for ticket_hash in contract.owners:
                merged.by_ticket.setdefault(ticket_hash, []).append(contract)
    return merged


TRUST = TrustFormat(NAME, parse_trust, merge_trust)


# --- reading --------------------------------------------------------------------------------


def recognises(text: str) -> bool:
    return len(text) == TEXT_LENGTH and _HEX.fullmatch(text) is not None


def split(text: str) -> tuple[bytes, bytes] | None:
    if not recognises(text):
        return None
    raw = bytes.fromhex(text)
    return raw[:65], raw[65:]


def read(text: str, env: Env) -> Claims | Denial:
    parts = split(text.strip())
    if parts is None:
        return Denial(Reason.UNREADABLE, f"eth_qr: not {TEXT_LENGTH} hex digits")
    signature, ticket_hash = parts
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    if v not in (27, 28):
        return Denial(Reason.UNREADABLE, f"eth_qr: signature v is {v}, not 27 or 28")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return Denial(Reason.BAD_SIGNATURE, "eth_qr: signature out of range or high-s")
    trust: EthTrust = env.trust.get(NAME) or EthTrust()
    contracts = trust.by_ticket.get(ticket_hash)
    if not contracts:
        return Denial(Reason.UNKNOWN_KEY, "eth_qr: ticket is in no ownership snapshot held")
    minute = int(env.now) // MINUTE
    for contract in contracts:
        owner = contract.owners[ticket_hash]
        for m in (minute, minute - 1, minute + 1):
            if recover_address(signed_digest(contract.address, ticket_hash, m), signature) == owner:
                return Claims(
                    format=NAME,
                    ticket_key=ticket_key(NAME, contract.address + ticket_hash),
                    event=contract.event,
                    proof=Proof(NAME, m * MINUTE, ticket_key(f"{NAME}-proof", signature)),
                )
    for contract in contracts:
        owner = contract.owners[ticket_hash]
        for m in range(minute - 2, minute - 2 - STALE_SEARCH, -1):
            if recover_address(signed_digest(contract.address, ticket_hash, m), signature) == owner:
                return Denial(Reason.STALE_PROOF, f"eth_qr: signed {minute - m} minutes ago")
    return Denial(Reason.BAD_SIGNATURE, "eth_qr: not signed by the ticket's owner in the snapshot")


def ticket_key_of(text: str) -> str | None:
    """Needs the snapshot to know the contract, so a raw code cannot be revoked by text."""
    return None


FORMAT = TicketFormat(NAME, recognises, read, ticket_key_of)
