"""Ed25519 signatures on cache entries: trusted CI signs, everyone else only verifies.

Turborepo signs with an HMAC, so whoever can check a signature can also forge one,
and a pull-request job that verifies holds the secret. Here the private key
(BUILDLIB_CACHE_SIGNING_KEY) lives only where trusted results are made, and the
public keys are committed in the manifest (`[cache] trusted_keys`): a reader can
check an entry but never make one that passes.

Keys are written as text: a public key as `ed25519:<base64 of its 32 raw bytes>`, a
private key as `ed25519-private:<base64 of its 32-byte seed>` or as PKCS#8 PEM.
`buildlib keygen` prints a new pair. A signature travels as `<public key text>`
plus 64 raw bytes; only a key in the trusted list can make it valid.

`cryptography` is imported here only, by the functions that need it: the manifest
checks a key's text with `public_key_problem` without loading it, and a build
without signing or trusted keys never does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING

from buildlib.core.errors import UserError
from buildlib.core.records import record

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PUBLIC_PREFIX = "ed25519:"
PRIVATE_PREFIX = "ed25519-private:"
KEY_BYTES = 32
SIGNATURE_BYTES = 64


@record
class Signature:
    """A signature over a message, with the public key that made it (raw bytes)."""

    public_key: bytes
    value: bytes


def public_key_problem(text: str) -> str | None:
    """Why `text` is not a public key in the manifest's form, or None (no import needed)."""
    if not text.startswith(PUBLIC_PREFIX):
        return f"{text!r} does not start with {PUBLIC_PREFIX!r}"
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX) :], validate=True)
    except binascii.Error:
        return f"{text!r} is not base64 after {PUBLIC_PREFIX!r}"
    if len(raw) != KEY_BYTES:
        return f"{text!r} holds {len(raw)} bytes, an Ed25519 public key has {KEY_BYTES}"
    return None


def public_key_text(raw: bytes) -> str:
    return PUBLIC_PREFIX + base64.b64encode(raw).decode()


class Signer:
    """Signs with the private key from BUILDLIB_CACHE_SIGNING_KEY (never printed)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def from_text(cls, text: str) -> Signer:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        text = text.strip()
        try:
            if text.startswith(PRIVATE_PREFIX):
                seed = base64.b64decode(text[len(PRIVATE_PREFIX) :], validate=True)
                return cls(Ed25519PrivateKey.from_private_bytes(seed))
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError, binascii.Error):
            key = None
        if not isinstance(key, Ed25519PrivateKey):  # an RSA or EC key is not ours either
            raise UserError(
                "BUILDLIB_CACHE_SIGNING_KEY is not an Ed25519 private key",
                fix="set it to the 'ed25519-private:...' line `buildlib keygen` "
                "prints (or an unencrypted PKCS#8 PEM Ed25519 key)",
            )
        return cls(key)

    def sign(self, message: bytes) -> Signature:
        return Signature(public_key=self.public_key, value=self._key.sign(message))


class Verifier:
    """Checks signatures against the manifest's trusted public keys."""

    def __init__(self, trusted: Sequence[str]) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._keys: dict[bytes, Ed25519PublicKey] = {}
        for text in trusted:
            problem = public_key_problem(text)
            if problem is not None:  # the manifest checks this; a bug if it gets here
                raise ValueError(problem)
            raw = base64.b64decode(text[len(PUBLIC_PREFIX) :])
            self._keys[raw] = Ed25519PublicKey.from_public_bytes(raw)

    def problem(self, message: bytes, signature: Signature | None) -> str | None:
        """Why `signature` does not vouch for `message`, or None when it does."""
        if signature is None:
            return "it is not signed"
        key = self._keys.get(signature.public_key)
        if key is None:
            return f"it is signed by {public_key_text(signature.public_key)}, not a trusted key"
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(signature.value, message)
        except InvalidSignature:
            return "its signature does not match its content"
        return None


def generate() -> tuple[str, str]:
    """A new key pair as text: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return PRIVATE_PREFIX + base64.b64encode(seed).decode(), public_key_text(Signer(key).public_key)
