"""Public ticket keys and revocation lists: the documents an offline door scanner reads."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class TicketKeyRead(BaseModel):
    kid: str = Field(description="Key id: the `kid` in EVT2 codes signed by this key")
    alg: Literal["Ed25519"] = "Ed25519"
    public_key: str = Field(description="The raw 32-byte public key, base64url (no padding)")
    public_key_pem: str = Field(description="The same key as SubjectPublicKeyInfo PEM")
    created_at: datetime
    retired_at: datetime | None = Field(
        description="Set once rotated out: it signs nothing new; tickets it signed stay valid"
    )


class TicketKeySet(BaseModel):
    """`GET /events/{id}/ticket-keys`: give it to `python -m app.cli verify-ticket --keys`."""

    event_id: int
    keys: list[TicketKeyRead]


class RevokedTicket(BaseModel):
    seq: int
    code: str
    revoked_at: str


class RevocationList(BaseModel):
    """One page of an event's cancelled tickets, after `since`. Signed by the event's
    current key over the canonical JSON of every field but `kid` and `signature`
    (`app.core.ticket_codes.canonical`). Ask again with `since=next` while `more`."""

    event_id: int
    since: int
    next: int = Field(description="The cursor to send as `since` next time")
    more: bool = Field(description="More revocations follow this page right now")
    issued_at: str
    revoked: list[RevokedTicket]
    kid: str
    signature: str
