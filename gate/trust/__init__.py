"""Trust: the documents that say which keys and tickets a gate trusts, and what the venue admin's
key signs (bundles, revocation deltas, commands). Verification and version rules, no SQL: what is
kept goes through ``gate.store``.

The trust documents' functions are re-exported here (``trust.build``, ``trust.parse_document``):
they are what most callers want from this package.
"""

from gate.trust.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    TrustDocument,
    build,
    document_from,
    parse_document,
    parse_stored,
    summary,
)

__all__ = ["MAX_DOCUMENT_BYTES", "MAX_DOCUMENT_DEPTH", "TrustDocument", "build", "document_from", "parse_document", "parse_stored", "summary"]
