"""Ed25519 ticket codes and signed revocation lists: everything a door scanner needs.

Pure functions of keys and bytes: no database, no settings, no secret. The offline
verifier (`python -m app.cli verify-ticket`) imports only this module, and the server
uses the same functions, so the two cannot disagree on the format.

A ticket code is `EVT2.<kid>.<event>.<seat>.<code>.<sig>`: `sig` is the unpadded
base64url Ed25519 signature (86 characters) of the ASCII text before its dot, and `kid`
the fingerprint of the public key that verifies it (`key_id`). About 130 characters:
a QR code of version 7 at medium error correction.

A revocation list is a JSON document signed over its canonical form (sorted keys, no
spaces) after a domain prefix, so a list's signature can never pass as a ticket's.
"""

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PREFIX = "EVT2"
ALGORITHM = "Ed25519"
REVOCATIONS_DOMAIN = b"EVT2-REVOCATIONS\n"
KID_BYTES = 6  # 8 base64url characters: keys are per event, a handful each
SIGNATURE_FIELDS = ("kid", "signature")


class InvalidTicket(ValueError):
    """A code that is malformed, signed by an unknown key, or whose signature fails."""


@dataclass(frozen=True)
class TicketClaim:
    """What a verified code vouches for."""

    kid: str
    event_id: int
    seat_id: int
    code: str


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_raw: bytes) -> str:
    """A key's fingerprint: the first bytes of its SHA-256, base64url."""
    return b64url(hashlib.sha256(public_raw).digest()[:KID_BYTES])


def sign_ticket(
    private: Ed25519PrivateKey, kid: str, event_id: int, seat_id: int, code: str
) -> str:
    payload = f"{PREFIX}.{kid}.{event_id}.{seat_id}.{code}"
    return f"{payload}.{b64url(private.sign(payload.encode()))}"


def parse(qr_code_data: str) -> tuple[TicketClaim, bytes, bytes]:
    """(claim, signed bytes, signature) of a well-formed EVT2 code; `InvalidTicket` if not."""
    parts = qr_code_data.strip().split(".")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise InvalidTicket("not an EVT2 ticket code")
    _, kid, event, seat, code, signature = parts
    if not (event.isdigit() and seat.isdigit() and code.isalnum() and kid):
        raise InvalidTicket("malformed ticket code")
    try:
        raw_signature = unb64url(signature)
    except ValueError as exc:
        raise InvalidTicket("malformed signature") from exc
    claim = TicketClaim(kid=kid, event_id=int(event), seat_id=int(seat), code=code)
    return claim, ".".join(parts[:5]).encode(), raw_signature


def verify(qr_code_data: str, keys: Mapping[str, Ed25519PublicKey]) -> TicketClaim:
    """The claim of a code signed by one of `keys` (kid -> public key); `InvalidTicket` else."""
    claim, signed, signature = parse(qr_code_data)
    public = keys.get(claim.kid)
    if public is None:
        raise InvalidTicket(f"signed by unknown key {claim.kid!r}")
    _check(public, signature, signed)
    return claim


def _check(public: Ed25519PublicKey, signature: bytes, signed: bytes) -> None:
    try:
        public.verify(signature, signed)
    except InvalidSignature as exc:
        raise InvalidTicket("bad signature") from exc


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes a revocation list's signature covers: all but its signature fields."""
    body = {k: v for k, v in document.items() if k not in SIGNATURE_FIELDS}
    return REVOCATIONS_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_document(private: Ed25519PrivateKey, kid: str, document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "kid": kid, "signature": b64url(private.sign(canonical(document)))}


def verify_document(document: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> None:
    """`InvalidTicket` unless a revocation list is signed by one of `keys`."""
    public = keys.get(str(document.get("kid")))
    if public is None:
        raise InvalidTicket(f"revocation list signed by unknown key {document.get('kid')!r}")
    try:
        signature = unb64url(str(document.get("signature", "")))
    except ValueError as exc:
        raise InvalidTicket("malformed revocation list signature") from exc
    try:
        _check(public, signature, canonical(document))
    except InvalidTicket as exc:
        raise InvalidTicket("revocation list: bad signature") from exc


def load_keys(document: Mapping[str, Any]) -> tuple[int, dict[str, Ed25519PublicKey]]:
    """(event id, kid -> public key) of a `GET /events/{id}/ticket-keys` document.

    Retired keys are kept: tickets they signed stay valid. A kid that does not match
    its key's fingerprint is refused (a document edited by hand, or corrupted)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document["keys"]:
        if entry.get("alg") != ALGORITHM:
            continue
        raw = unb64url(str(entry["public_key"]))
        if key_id(raw) != entry["kid"]:
            raise ValueError(f"key {entry['kid']!r} does not match its fingerprint")
        keys[str(entry["kid"])] = Ed25519PublicKey.from_public_bytes(raw)
    return int(document["event_id"]), keys


def revoked_codes(
    pages: Iterable[Mapping[str, Any]], event_id: int, keys: Mapping[str, Ed25519PublicKey]
) -> set[str]:
    """Every code on verified revocation-list pages of the event; `InvalidTicket` if one fails."""
    codes: set[str] = set()
    for page in pages:
        verify_document(page, keys)
        if page.get("event_id") != event_id:
            raise InvalidTicket(f"revocation list is for event {page.get('event_id')}")
        codes.update(str(item["code"]) for item in page["revoked"])
    return codes
