"""Ticket signing keys, revocation lists, and the verification of EVT2 codes.

**One Ed25519 key pair per event**, not per organizer:
- a door scanner downloads exactly the keys of the event it guards
  (`GET /events/{id}/ticket-keys`), and a code of another event never verifies there;
- a leaked private key mints tickets for one event only, and rotating it touches that
  event alone (a per-organizer key would expose, and force re-keying, every event of a
  promoter with hundreds of them);
- a key's life ends with its event: nothing to retire across years of events.
The cost, one key pair (~50 µs) and one row per event, is nothing.

Private keys live in `ticket_keys`, sealed with a key derived from SECRET_KEY
(`app.core.keystore`). Rotation retires the signing key (its public half stays
published with `retired_at`) and creates a new one that signs from then on.

Revocation lists are public: a list holds only codes of cancelled tickets, which admit
no one, and a scanner should not need an organizer's credentials to stay current.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.core import keystore, ticket_codes
from app.core.db import UnitOfWork
from app.core.errors import Forbidden, NotFound
from app.crud import events as events_crud
from app.crud import ticket_keys as crud
from app.models import EventStatus, Role, TicketKey, User
from app.schemas.tickets import RevocationList, RevokedTicket, TicketKeyRead, TicketKeySet

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Signer:
    """An event's current signing key, opened."""

    event_id: int
    kid: str
    private: Ed25519PrivateKey

    def sign(self, seat_id: int, code: str) -> str:
        return ticket_codes.sign_ticket(self.private, self.kid, self.event_id, seat_id, code)


async def signer(uow: UnitOfWork, event_id: int) -> Signer:
    """The event's signing key, created on first use; a key SECRET_KEY no longer opens is
    retired and replaced (tickets it signed still verify with its published public key)."""
    for _ in range(3):
        key = await crud.signing_key(uow.session, event_id)
        if key is None:
            await _add_key(uow, event_id)
            continue
        try:
            return Signer(
                event_id, key.kid, keystore.unseal(key.private_key_sealed, event_id, key.kid)
            )
        except keystore.SealedKeyUnreadable:
            log.warning("ticket_key_unreadable_replaced", event_id=event_id, kid=key.kid)
            await crud.retire_signing_key(uow.session, event_id)
    raise RuntimeError(f"no usable ticket signing key for event {event_id}")


async def _add_key(uow: UnitOfWork, event_id: int) -> None:
    private = Ed25519PrivateKey.generate()
    raw = ticket_codes.public_bytes(private.public_key())
    kid = ticket_codes.key_id(raw)
    sealed = keystore.seal(private, event_id, kid)
    values = {"event_id": event_id, "kid": kid, "public_key": raw, "private_key_sealed": sealed}
    await crud.add_signing_key(uow.session, values)


async def rotate(uow: UnitOfWork, user: User, event_id: int) -> TicketKeySet:
    """Retire the event's signing key and sign new tickets with a fresh one."""
    event = await events_crud.get_for_update(uow.session, event_id)  # one rotation at a time
    if event is None:
        raise NotFound(f"Event {event_id} does not exist.")
    if user.role != Role.ADMIN and event.organizer_id != user.id:
        raise Forbidden("You can only manage your own events.")
    await crud.retire_signing_key(uow.session, event_id)
    await _add_key(uow, event_id)
    log.info("ticket_key_rotated", event_id=event_id, by=user.id)
    return await _key_set(uow, event_id)


async def key_set(uow: UnitOfWork, event_id: int) -> TicketKeySet:
    """Every public key of a public event, the signing one created if there is none yet
    (so scanners can be set up before the first sale)."""
    await _public_event(uow, event_id)
    if await crud.signing_key(uow.session, event_id) is None:
        await signer(uow, event_id)
    return await _key_set(uow, event_id)


async def _key_set(uow: UnitOfWork, event_id: int) -> TicketKeySet:
    keys = await crud.keys_of(uow.session, event_id)
    return TicketKeySet(event_id=event_id, keys=[_key_read(k) for k in keys])


def _key_read(key: TicketKey) -> TicketKeyRead:
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return TicketKeyRead(
        kid=key.kid,
        public_key=ticket_codes.b64url(key.public_key),
        public_key_pem=pem,
        created_at=key.created_at,
        retired_at=key.retired_at,
    )


async def _public_event(uow: UnitOfWork, event_id: int) -> None:
    event = await events_crud.get(uow.session, event_id)
    if event is None or event.status == EventStatus.DRAFT:  # drafts are not public
        raise NotFound(f"Event {event_id} does not exist.")


async def revocation_list(uow: UnitOfWork, event_id: int, since: int, limit: int) -> RevocationList:
    """The event's cancelled tickets after cursor `since`, at most `limit`, signed."""
    await _public_event(uow, event_id)
    rows = await crud.revocations(uow.session, event_id, since, limit + 1)
    page = rows[:limit]
    document = {
        "event_id": event_id,
        "since": since,
        "next": page[-1].seq if page else since,
        "more": len(rows) > limit,
        "issued_at": datetime.now(UTC).isoformat(),
        "revoked": [_revoked(r.seq, r.code, r.revoked_at) for r in page],
    }
    key = await signer(uow, event_id)
    return RevocationList.model_validate(ticket_codes.sign_document(key.private, key.kid, document))


def _revoked(seq: int, code: str, revoked_at: datetime) -> dict[str, object]:
    return RevokedTicket(seq=seq, code=code, revoked_at=revoked_at.isoformat()).model_dump()


async def public_keys(uow: UnitOfWork, event_id: int, kid: str) -> dict[str, Ed25519PublicKey]:
    """{kid: public key} when the event has that key (signing or retired), else {}."""
    key = await crud.key(uow.session, event_id, kid)
    return {} if key is None else {kid: Ed25519PublicKey.from_public_bytes(key.public_key)}
