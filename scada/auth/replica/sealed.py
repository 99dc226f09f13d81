"""Password hashes on Redis only sealed, for the ingest nodes' eyes only.

A standby that takes over must know the password hashes of users made on the old active
node, so the active node publishes them, but never as they are: each hash is sealed with
AES-256-GCM (the user's name as associated data, so a sealed hash cannot be moved to another
user) under a key derived (HKDF-SHA256) from the ingest nodes' Redis password, which only
the ingest nodes have, and kept in `<p>:auth:secrets`, a key only the ingest ACL user can
read (scada.bus.acl). A gateway, the CLI tools, an AOF copy or anyone else who reads Redis
sees neither the hash nor what it could be unsealed with.

Without a password in the URL (a Redis without ACLs) there is no key: hashes are not
published at all, and a takeover keeps each user's hash from the node's own store.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from scada.bus.acl import password_of

NONCE = 12


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def for_password(cls, password: str, prefix: str) -> Sealer:
        """The sealer of the ingest nodes (Redis password `password`) under `prefix`."""
        kdf = HKDF(hashes.SHA256(), 32, salt=b"scada auth secrets", info=prefix.encode())
        return cls(kdf.derive(password.encode()))

    @classmethod
    def for_url(cls, url: str, prefix: str) -> Sealer | None:
        """The sealer for an ingest node's `url`; None without a password in it."""
        password = password_of(url)
        return cls.for_password(password, prefix) if password else None

    def seal(self, name: str, secret: str) -> bytes:
        nonce = os.urandom(NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), name.encode())
        return base64.b64encode(nonce + sealed)

    def unseal(self, name: str, blob: bytes | str) -> str | None:
        """The secret, or None if it was not sealed for `name` with this key."""
        try:
            raw = base64.b64decode(blob, validate=True)
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], name.encode()).decode()
        except (InvalidTag, ValueError):
            return None
