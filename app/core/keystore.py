"""Ticket signing keys at rest: Ed25519 private keys sealed with AES-256-GCM.

The sealing key is derived from SECRET_KEY with HKDF-SHA256 for this one purpose (so it
is never the JWT key), and each ciphertext is bound to its row (`event:kid` as associated
data): a sealed key copied onto another event's row does not open. A database dump alone
therefore yields no signing key. Changing SECRET_KEY makes the sealed keys unreadable:
the ticket service then retires them and signs with a new key (their public halves stay
published, so tickets already issued still verify).
"""

import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.config import get_settings

NONCE_BYTES = 12
HKDF_INFO = b"evently ticket signing keys v1"


class SealedKeyUnreadable(Exception):
    """The sealed key does not open with the current SECRET_KEY (or was tampered with)."""


def _sealing_key() -> bytes:
    return _derive(get_settings().secret_key)


@lru_cache(maxsize=4)
def _derive(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
    return hkdf.derive(secret.encode())


def _bound_to(event_id: int, kid: str) -> bytes:
    return f"{event_id}:{kid}".encode()


def seal(private: Ed25519PrivateKey, event_id: int, kid: str) -> bytes:
    """nonce || AES-GCM(raw private key), bound to (event, kid)."""
    nonce = os.urandom(NONCE_BYTES)
    raw = private.private_bytes_raw()
    return nonce + AESGCM(_sealing_key()).encrypt(nonce, raw, _bound_to(event_id, kid))


def unseal(sealed: bytes, event_id: int, kid: str) -> Ed25519PrivateKey:
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        raw = AESGCM(_sealing_key()).decrypt(nonce, ciphertext, _bound_to(event_id, kid))
    except InvalidTag as exc:
        raise SealedKeyUnreadable(f"ticket key {kid} of event {event_id}") from exc
    return Ed25519PrivateKey.from_private_bytes(raw)
