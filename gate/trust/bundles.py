"""Taking in signed trust bundles and revocation deltas (DESIGN §5): verification and the
version rules here, the writing in ``gate.store`` (``Store.install_bundle`` / ``install_delta``).

A bundle replaces the previous one whole: its trust documents (stored as ``bundle/…`` trust
documents, which the engine picks up within a second), its revocation list, the venue's roster
of gates and each zone's capacity (``gate.lane.zones`` reads them within a second). A delta changes
the revocations of the bundle it names as its base. Versions only move forward: an older bundle
or delta is refused and nothing changes.

A million revocations must not stall the lane: the store writes them in chunks into a staging
table and swaps it in with the documents and the version in one last short transaction. Callers
run ``apply`` off the decision loop's thread (``gate.sync.bundle_worker``) with their own
``Store`` connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from gate import trust
from gate.decision import PREFIX_BYTES
from gate.errors import SignedError, TrustError
from gate.store import Held, HeldMessage, Store
from gate.store.trust_store import BUNDLE_DOCUMENTS
from gate.trust import signed
from gate.trust.signed import Bundle, Delta

log = logging.getLogger(__name__)


class Outcome:
    APPLIED = "applied"
    CURRENT = "current"  # exactly what is held already (a retained message delivered again)
    REFUSED = "refused"


@dataclass(frozen=True)
class Report:
    """What became of one signed bundle or delta: for the log, the status and the CLI."""

    outcome: str
    what: str = ""  # "bundle" or "delta"
    version: int = 0
    base: int = 0  # a delta's bundle
    kind: str = ""  # a refusal's SignedError.kind
    error: str = ""
    held: Held = Held()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome, "what": self.what, "version": self.version}
        if self.what == "delta":
            out["base"] = self.base
        if self.outcome == Outcome.REFUSED:
            out.update(kind=self.kind, error=self.error)
        out["held"] = self.held.as_dict()
        return out


def receive(store: Store, data: bytes, admin_key: bytes | None, venue: str, sources: Any = None) -> Report:
    """Verify and apply one signed bundle or delta from a file or the bus. Never raises: a
    refusal (forged, unsigned, older, another venue, ...) is a ``Report`` naming why, and the
    database is as it was."""
    state = store.trust.held()
    digest = hashlib.sha256(data).hexdigest()
    if digest in (state.bundle_sha256, state.delta_sha256):  # cheap: no parsing of 20 MB again
        return Report(Outcome.CURRENT, held=state)
    what, version, base = "", 0, 0
    try:
        message = signed.read(data, admin_key, venue)
        if not isinstance(message, (Bundle, Delta)):
            raise SignedError("wrong_type", "a command is not a bundle")
        what = "bundle" if isinstance(message, Bundle) else "delta"
        version, base = message.version, getattr(message, "base", 0)
        outcome = apply(store, message, sources)
        return Report(outcome, what, version, base, held=store.trust.held())
    except SignedError as exc:
        log.warning("%s refused version=%d kind=%s error=%r", what or "signed message", version, exc.kind, str(exc))
        return Report(Outcome.REFUSED, what, version, base, exc.kind, str(exc), store.trust.held())
    except Exception as exc:  # a database fault: nothing half-applied (transactions), say so
        log.exception("%s not applied version=%d", what or "signed message", version)
        return Report(Outcome.REFUSED, what, version, base, "error", f"{exc.__class__.__name__}: {exc}", store.trust.held())


def apply(store: Store, message: Bundle | Delta, sources: Any = None, now: float | None = None) -> str:
    """Apply a verified bundle or delta (``Outcome.APPLIED``), else ``SignedError``
    (``older``, ``no_base``, ``bad_documents``) with the database unchanged. ``sources``
    (``engine.TrustSources``) is the config's trust, checked against the bundle's documents."""
    now = time.time() if now is None else now
    if isinstance(message, Bundle):
        return _apply_bundle(store, message, sources, now)
    return _apply_delta(store, message, now)


def _apply_bundle(store: Store, bundle: Bundle, sources: Any, now: float) -> str:
    _check_newer(bundle.version, store.trust.held().bundle_version, "bundle")
    documents = _documents(store, bundle, sources)
    started = time.monotonic()
    held = HeldMessage(bundle.version, 0, bundle.issued_at, bundle.sha256, bundle.revoked_count, 0, len(documents))
    store.install_bundle(bundle.revoked, documents, held, now,
                         check=lambda current: _check_newer(bundle.version, current.bundle_version, "bundle"),
                         roster=bundle.roster, zones=bundle.zones)
    log.info("bundle applied version=%d documents=%d revoked=%d gates=%d zones=%s seconds=%.2f",
             bundle.version, len(documents), bundle.revoked_count, len(bundle.roster),
             ",".join(f"{zone}:{capacity}" for zone, capacity in sorted(bundle.zones.items())) or "-",
             time.monotonic() - started)
    return Outcome.APPLIED


def _apply_delta(store: Store, delta: Delta, now: float) -> str:
    revoked, restored = len(delta.revoked) // PREFIX_BYTES, len(delta.restored) // PREFIX_BYTES

    def check(state: Held) -> None:
        if delta.base > state.bundle_version:
            raise SignedError("no_base", f"delta is for bundle {delta.base}, this gate holds bundle {state.bundle_version}")
        if delta.base < state.bundle_version:
            raise SignedError("older", f"delta is for bundle {delta.base}, older than the bundle held ({state.bundle_version})")
        _check_newer(delta.version, state.delta_version, "delta")

    held = HeldMessage(delta.version, delta.base, delta.issued_at, delta.sha256, revoked, restored, 0)
    store.install_delta(delta.revoked, delta.restored, held, now, check)
    log.info("revocation delta applied base=%d version=%d revoked=%d restored=%d", delta.base, delta.version, revoked, restored)
    return Outcome.APPLIED


def _check_newer(version: int, held_version: int, what: str) -> None:
    if version <= held_version:
        raise SignedError("older", f"{what} version {version} is not newer than the one held ({held_version})")


def _documents(store: Store, bundle: Bundle, sources: Any) -> list[tuple[str, str, str]]:
    """The bundle's documents as ``(name, format, JSON text)``, each parsed, and all checked
    against everything else the gate trusts."""
    parsed, documents = [], []
    try:
        for i, body in enumerate(bundle.documents):
            name = f"{BUNDLE_DOCUMENTS}{bundle.version}/{i + 1}-{body.get('format', '?')}"
            document = trust.document_from(body, name)
            parsed.append(document)
            documents.append((name, document.format, json.dumps(body, separators=(",", ":"))))
        others = trust.parse_stored(row for row in store.trust.documents() if not row[0].startswith(BUNDLE_DOCUMENTS))
        config_documents = list(sources.documents) if sources is not None else []
        gt1_keys = sources.gt1_keys if sources is not None else None
        trust.build([*config_documents, *others, *parsed], gt1_keys)
    except TrustError as exc:
        raise SignedError("bad_documents", f"bundle {bundle.version}: {exc}") from None
    return documents
