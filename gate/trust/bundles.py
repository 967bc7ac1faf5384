"""Taking in signed trust bundles and revocation deltas (DESIGN §5), into the gate's database.

A bundle replaces the previous one whole: its trust documents (stored as ``bundle/…`` trust
documents, which the engine picks up within a second) and its revocation list. A delta changes
the revocations of the bundle it names as its base. Versions only move forward: an older bundle
or delta is refused and nothing changes.

A million revocations must not stall the lane. They are written in chunks, each its own short
transaction, into a staging table that no decision reads; a last short transaction swaps it in
together with the documents and the version. The decision loop's writes (admissions) wait at
most one chunk, and a reader sees the old list or the new one, never half of each. Callers run
``apply`` off the decision loop's thread (the daemon has a worker for it) with their own
``Ledger`` connection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from gate import trust
from gate.trust import signed
from gate.formats import TrustError
from gate.store.ledger import Ledger, create_revocations
from gate.trust.signed import PREFIX_BYTES, Bundle, Delta, SignedError

log = logging.getLogger(__name__)

DOCUMENT_PREFIX = "bundle/"
STAGING = "bundle_revocations_staging"
CHUNK = 1_000  # rows per staging transaction: about 4 ms of write lock
CHUNK_PAUSE = 0.0005  # seconds between them


@dataclass(frozen=True)
class Held:
    """The bundle and delta a gate holds (version 0: none)."""

    bundle_version: int = 0
    bundle_sha256: str = ""
    issued_at: float = 0.0
    revoked: int = 0
    documents: int = 0
    delta_version: int = 0
    delta_sha256: str = ""
    delta_revoked: int = 0
    delta_restored: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.bundle_version, "delta": self.delta_version, "revoked": self.revoked,
                "documents": self.documents, "delta_revoked": self.delta_revoked, "delta_restored": self.delta_restored}


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


def receive(ledger: Ledger, data: bytes, admin_key: bytes | None, venue: str, sources: Any = None) -> Report:
    """Verify and apply one signed bundle or delta from a file or the bus. Never raises: a
    refusal (forged, unsigned, older, another venue, ...) is a ``Report`` naming why, and the
    database is as it was."""
    state = held(ledger)
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
        outcome = apply(ledger, message, sources)
        return Report(outcome, what, version, base, held=held(ledger))
    except SignedError as exc:
        log.warning("%s refused version=%d kind=%s error=%r", what or "signed message", version, exc.kind, str(exc))
        return Report(Outcome.REFUSED, what, version, base, exc.kind, str(exc), held(ledger))
    except Exception as exc:  # a database fault: nothing half-applied (transactions), say so
        log.exception("%s not applied version=%d", what or "signed message", version)
        return Report(Outcome.REFUSED, what, version, base, "error", f"{exc.__class__.__name__}: {exc}", held(ledger))


def held(ledger: Ledger) -> Held:
    rows = {row[0]: row[1:] for row in ledger.conn.execute(
        "SELECT name, version, sha256, issued_at, revoked, restored, documents FROM trust_state")}
    bundle, delta = rows.get("bundle"), rows.get("delta")
    return Held(
        bundle_version=bundle[0] if bundle else 0,
        bundle_sha256=bundle[1] if bundle else "",
        issued_at=bundle[2] if bundle else 0.0,
        revoked=bundle[3] if bundle else 0,
        documents=bundle[5] if bundle else 0,
        delta_version=delta[0] if delta else 0,
        delta_sha256=delta[1] if delta else "",
        delta_revoked=delta[3] if delta else 0,
        delta_restored=delta[4] if delta else 0,
    )


def apply(ledger: Ledger, message: Bundle | Delta, sources: Any = None, now: float | None = None) -> str:
    """Apply a verified bundle or delta (``Outcome.APPLIED``), else ``SignedError``
    (``older``, ``no_base``, ``bad_documents``) with the database unchanged. ``sources``
    (``engine.TrustSources``) is the config's trust, checked against the bundle's documents."""
    now = time.time() if now is None else now
    if isinstance(message, Bundle):
        return _apply_bundle(ledger, message, sources, now)
    return _apply_delta(ledger, message, now)


def _apply_bundle(ledger: Ledger, bundle: Bundle, sources: Any, now: float) -> str:
    _check_newer(bundle.version, held(ledger).bundle_version, "bundle")
    documents = _documents(ledger, bundle, sources)
    started = time.monotonic()
    conn = ledger.conn
    conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
    create_revocations(conn, STAGING)
    conn.execute("PRAGMA synchronous = NORMAL")  # staging: a power cut only loses the staging table
    try:
        for chunk in _chunks(bundle.revoked):
            with ledger.transaction():
                conn.executemany(f"INSERT OR IGNORE INTO {STAGING} (prefix) VALUES (?)", chunk)
            time.sleep(CHUNK_PAUSE)  # the decision loop's admissions go in between
    finally:
        conn.execute("PRAGMA synchronous = FULL")
    staged = time.monotonic()
    with ledger.transaction():
        current = held(ledger)  # another process may have applied one meanwhile
        _check_newer(bundle.version, current.bundle_version, "bundle")
        conn.execute("DROP TABLE bundle_revocations")
        conn.execute(f"ALTER TABLE {STAGING} RENAME TO bundle_revocations")
        conn.execute("DELETE FROM delta_revocations")
        conn.execute("DELETE FROM trust_documents WHERE name LIKE ?", (DOCUMENT_PREFIX + "%",))
        for document, body in documents:
            ledger.store_trust_document(document.name, document.format, body, now)
        conn.execute("DELETE FROM trust_state")
        _set_state(ledger, "bundle", bundle.version, 0, bundle, bundle.revoked_count, 0, len(documents), now)
    log.info(
        "bundle applied version=%d documents=%d revoked=%d stage_s=%.2f swap_ms=%.1f",
        bundle.version, len(documents), bundle.revoked_count, staged - started, (time.monotonic() - staged) * 1000,
    )
    return Outcome.APPLIED


def _apply_delta(ledger: Ledger, delta: Delta, now: float) -> str:
    with ledger.transaction():
        state = held(ledger)
        if delta.base > state.bundle_version:
            raise SignedError("no_base", f"delta is for bundle {delta.base}, this gate holds bundle {state.bundle_version}")
        if delta.base < state.bundle_version:
            raise SignedError("older", f"delta is for bundle {delta.base}, older than the bundle held ({state.bundle_version})")
        _check_newer(delta.version, state.delta_version, "delta")
        conn = ledger.conn
        conn.execute("DELETE FROM delta_revocations")  # cumulative: the newest delta says it all
        for chunk in _chunks(delta.restored):
            conn.executemany("INSERT OR REPLACE INTO delta_revocations (prefix, revoked) VALUES (?, 0)", chunk)
        for chunk in _chunks(delta.revoked):
            conn.executemany("INSERT OR REPLACE INTO delta_revocations (prefix, revoked) VALUES (?, 1)", chunk)
        revoked, restored = len(delta.revoked) // PREFIX_BYTES, len(delta.restored) // PREFIX_BYTES
        _set_state(ledger, "delta", delta.version, delta.base, delta, revoked, restored, 0, now)
    log.info("revocation delta applied base=%d version=%d revoked=%d restored=%d", delta.base, delta.version, revoked, restored)
    return Outcome.APPLIED


def _check_newer(version: int, held_version: int, what: str) -> None:
    if version <= held_version:
        raise SignedError("older", f"{what} version {version} is not newer than the one held ({held_version})")


def _documents(ledger: Ledger, bundle: Bundle, sources: Any) -> list[tuple[trust.TrustDocument, str]]:
    """The bundle's documents, parsed, and checked against everything else the gate trusts."""
    documents = []
    try:
        for i, body in enumerate(bundle.documents):
            name = f"{DOCUMENT_PREFIX}{bundle.version}/{i + 1}-{body.get('format', '?')}"
            documents.append((trust.document_from(body, name), json.dumps(body, separators=(",", ":"))))
        others = [d for d in ledger.trust_documents() if not d.name.startswith(DOCUMENT_PREFIX)]
        config_documents = list(sources.documents) if sources is not None else []
        gt1_keys = sources.gt1_keys if sources is not None else None
        trust.build([*config_documents, *others, *(d for d, _ in documents)], gt1_keys)
    except TrustError as exc:
        raise SignedError("bad_documents", f"bundle {bundle.version}: {exc}") from None
    return documents


def _set_state(ledger: Ledger, name: str, version: int, base: int, message: Bundle | Delta,
               revoked: int, restored: int, documents: int, now: float) -> None:
    ledger.conn.execute(
        "INSERT OR REPLACE INTO trust_state (name, version, base, issued_at, sha256, revoked, restored, documents, applied_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, version, base, message.issued_at, message.sha256, revoked, restored, documents, now),
    )


def _chunks(prefixes: bytes) -> Iterator[list[tuple[bytes]]]:
    step = PREFIX_BYTES * CHUNK
    for start in range(0, len(prefixes), step):
        block = prefixes[start : start + step]
        yield [(block[i : i + PREFIX_BYTES],) for i in range(0, len(block), PREFIX_BYTES)]
