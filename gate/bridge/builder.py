"""What was pulled from pretix, as trust documents, and when to publish a bundle or a delta.

A lane's pretix document (docs/trust-documents.md) holds the event's keys, the check-in list's
settings that decide offline, the revoked and blocked secrets, and, for random secrets, the
valid ones with their products. pretix's check-in list has more fields than a lane can honour
offline; ``checkin_list`` keeps the ones it can and names the others (``unhonoured``), which the
bridge logs and shows on its status, rather than silently dropping a restriction.

Bundles replace everything a lane holds from the admin (documents and roster), so each bundle
carries the roster and the venue's other documents as well as pretix's. Revocations and blocks
that arrive between two bundles go out as one cumulative delta against the bundle held (a
cancelled order reaches every lane in the time of one poll and one MQTT message); a change of
keys, list or valid secrets, an unblock, or a delta grown past ``DELTA_LIMIT`` makes a new bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from gate.decision import revocation_prefix, ticket_key
from gate.formats.pretix import KEY_NAMESPACE, Unreadable, split_sig1
from gate.strictjson import Fields
from gate.trust import signed

log = logging.getLogger(__name__)

DELTA_LIMIT = 5000  # revocations carried by a delta before a new bundle folds them in


class _Fields(Fields):
    error = ValueError


def secret_key(secret: str) -> str:
    """The ledger's ticket key of a pretix secret (signed or random: one namespace)."""
    return ticket_key(KEY_NAMESPACE, secret)


def is_signed_secret(secret: str) -> bool:
    try:
        split_sig1(secret)
    except Unreadable:
        return False
    return True


def checkin_list(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """pretix's check-in list object (every field it sends is accepted) → the document's
    ``checkin_list`` and what a lane cannot honour offline."""
    doc = _Fields(raw, "checkin_list")
    out = {
        "all_products": doc.boolean("all_products", True),
        "limit_products": doc.integers("limit_products", []),
        "subevent": doc.integer("subevent", None, minval=0),
        "allow_multiple_entries": doc.boolean("allow_multiple_entries", False),
        "allow_entry_after_exit": doc.boolean("allow_entry_after_exit", True),
    }
    unhonoured = []
    rules = doc.get("rules", {})
    if rules not in ({}, None):
        unhonoured.append("rules: custom check-in rules are not evaluated by the lanes (offline, no order data)")
    if doc.boolean("include_pending", False):
        unhonoured.append("include_pending: lanes cannot tell paid from pending orders; signed secrets of pending "
                          "orders open, random secrets of pending orders do not")
    if doc.get("exit_all_at", None):
        unhonoured.append("exit_all_at: lanes do not check everybody out at a set time")
    if doc.boolean("addon_match", False):
        unhonoured.append("addon_match: lanes do not look up add-on products of a ticket")
    if doc.get("gates", []):
        unhonoured.append("gates: pretix's gate restriction; lanes follow their own [policy] and roster zones")
    doc.accept_rest()  # id, name, position_count, checkin_count, ignore_in_statistics, …: informative
    return out, unhonoured


def valid_keys(event: dict[str, Any]) -> list[str]:
    doc = _Fields(event, "event")
    keys = doc.obj("valid_keys", None)
    doc.accept_rest()
    if keys is None:
        return []
    out = keys.texts("pretix_sig1", [], max_len=4096)
    keys.accept_rest()  # other schemes pretix may publish are not the lanes'
    return list(out)


@dataclass
class EventPull:
    """One event as pulled: ``revoked`` and ``blocked`` hold secrets (pretix's own words)."""

    slug: str
    keys: list[str]
    checkin_list: dict[str, Any]
    revoked: set[str]
    blocked: set[str]
    valid_secrets: list[dict[str, Any]]  # random secrets of paid orders
    unhonoured: list[str]

    def document(self, with_lists: bool = True) -> dict[str, Any] | None:
        """The lane's trust document, or None when nothing could be verified yet (no key
        published, no random secret sold)."""
        if not self.keys and not self.valid_secrets:
            return None
        doc: dict[str, Any] = {"format": "pretix", "event": self.slug, "valid_keys": {"pretix_sig1": self.keys},
                               "checkin_list": self.checkin_list, "valid_secrets": self.valid_secrets}
        if with_lists:
            doc["revoked_secrets"] = sorted(self.revoked)
            doc["blocked_secrets"] = sorted(s for s in self.blocked)
        return doc


@dataclass(frozen=True)
class Publication:
    kind: str  # "bundle" or "delta"
    version: int
    data: bytes  # the signed message, as published
    revoked: int  # revocations it carries (delta) / revoked + blocked secrets in its documents (bundle)


class Publisher:
    """Decides what to publish after each pull, and signs it with the admin key. Its state
    (versions, what the last bundle and delta held) lives in the bridge's store, so a restarted
    bridge goes on from the versions it published."""

    def __init__(self, store: Any, admin_key: SigningKey, venue: str, roster: list[dict[str, Any]],
                 documents: list[dict[str, Any]]) -> None:
        self.store = store
        self.key = admin_key
        self.venue = venue
        self.roster = roster
        self.static = documents

    def plan(self, events: list[EventPull], now: float | None = None) -> list[Publication]:
        now = time.time() if now is None else now
        core = [self.static, self.roster, [e.document(with_lists=False) for e in events]]
        core_sha = hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        listed = {secret_key(s) for e in events for s in e.revoked | e.blocked}
        bundle = self.store.get("bundle", None)
        if bundle is not None and bundle["core"] == core_sha and set(bundle["listed"]) <= listed:
            extra = sorted(listed - set(bundle["listed"]))
            if len(extra) <= DELTA_LIMIT:
                delta = self.store.get("delta") or {"version": 0}
                if delta.get("base") == bundle["version"] and delta.get("keys") == extra:
                    return []
                return [self._delta(bundle["version"], extra, delta["version"], now)]
        return self._bundle(events, core_sha, sorted(listed), now)

    def _bundle(self, events: list[EventPull], core_sha: str, listed: list[str], now: float) -> list[Publication]:
        last = self.store.get("bundle") or {"version": 0}
        version = max(int(now), last["version"] + 1)
        documents = [*self.static, *(d for d in (e.document() for e in events) if d is not None)]
        payload = signed.bundle_payload(self.venue, version, now, documents, b"", self.roster)
        data = signed.sign(payload, self.key)
        self.store.put(bundle={"version": version, "core": core_sha, "listed": listed, "at": now,
                               "documents": len(documents), "bytes": len(data)})
        last_delta = self.store.get("delta") or {"version": 0}
        # An empty delta for the new bundle replaces the retained one of the old bundle, which a
        # lane that connects later would otherwise be offered and refuse as older.
        publications = [Publication("bundle", version, data, len(listed)),
                        self._delta(version, [], last_delta["version"], now)]
        return publications

    def _delta(self, base: int, keys: list[str], last_version: int, now: float) -> Publication:
        version = max(int(now), last_version + 1)
        prefixes = signed.pack_prefixes({revocation_prefix(k) for k in keys})
        payload = signed.delta_payload(self.venue, base, version, now, prefixes, b"")
        data = signed.sign(payload, self.key)
        self.store.put(delta={"version": version, "base": base, "keys": keys, "at": now})
        return Publication("delta", version, data, len(keys))
