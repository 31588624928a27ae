"""Keyed digests of who takes part in a consignment (data minimisation, WCO Standard 1).

Wherever greenlane only needs to know that two consignments name the same consignee or seller
(the model's history, the decision summaries, the seller-keyed pattern statistics), it keeps
an HMAC of the identity, not the identity. Without the key a digest cannot be matched against a
list of names; with it, the same party always gives the same digest, so statistics and the
model's history still add up. Officers' decision topics keep names: an officer needs them.
"""

from __future__ import annotations

import hashlib
import hmac

DIGEST_BYTES = 12  # 96 bits: no collision among billions of parties


class Pseudonymiser:
    """HMAC-SHA256 under a key derived from the deployment's pseudonymisation key."""

    def __init__(self, key: str) -> None:
        self._root = key.encode()
        self._key = self.derive("party digests v1")

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, independent of the others (HMAC as a KDF)."""
        return hmac.new(self._root, purpose.encode(), hashlib.sha256).digest()

    def __call__(self, *parts: str) -> str:
        """The hex digest of ``parts`` (joined with a unit separator, so ("a b", "c") and
        ("a", "b c") differ)."""
        data = "\x1f".join(parts).encode()
        return hmac.new(self._key, data, hashlib.sha256).digest()[:DIGEST_BYTES].hex()

    def party(self, role: str, party_id: str | None, *identity: str) -> str:
        """A party's digest: of its registration id when it has one, else of what identifies
        it (``identity``: name and country, or name and address)."""
        party_id = (party_id or "").strip()
        if party_id:
            return self(role, "id", party_id.upper())
        return self(role, "name", *identity)
