"""The waiting room's signed passes: queue tokens (a place in line) and admission tokens
(leave to book), both checkable without the database or Redis.

    queue token      WRQ1.<event>.<user>.<order>.<signature>
    admission token  WRA1.<event>.<user>.<expires, ms since the epoch>.<signature>

`order` is the entry's place key: the microsecond it joined after the sale opened, or
`early` for someone who joined before (their place is a keyed draw, see `early_draw`).
Signatures are HMAC-SHA256 (128 bits shown) under a key derived from SECRET_KEY for this
purpose only, so neither pass can stand in for an access token, a ticket, or the other
pass (the prefix is part of what is signed).
"""

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from app.core.config import get_settings

QUEUE_PREFIX = "WRQ1"
ADMISSION_PREFIX = "WRA1"
EARLY = "early"
DRAW_BITS = 48  # early draws are below 2**48; arrival keys (µs since 1970) are far above


@lru_cache(maxsize=4)
def _derived(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"evently-waiting-room-v1", hashlib.sha256).digest()


def _key() -> bytes:
    return _derived(get_settings().secret_key)


def _signature(payload: str) -> str:
    return hmac.new(_key(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def _signed(payload: str) -> str:
    return f"{payload}.{_signature(payload)}"


def _fields(token: str | None, prefix: str) -> tuple[int, int, str] | None:
    """(event, user, third field) of a well-formed pass with a good signature."""
    if not token or len(token) > 200:
        return None
    parts = token.strip().split(".")
    if len(parts) != 5 or parts[0] != prefix or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    if not hmac.compare_digest(_signature(".".join(parts[:4])), parts[4]):
        return None
    return int(parts[1]), int(parts[2]), parts[3]


def early_draw(event_id: int, user_id: int) -> int:
    """The place key of someone who joined before the sale opened: uniform, unknown to
    anyone without the secret, and the same every time (leaving and joining again does
    not re-roll it)."""
    digest = hmac.new(_key(), f"draw.{event_id}.{user_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - DRAW_BITS)


@dataclass(frozen=True)
class QueuePass:
    event_id: int
    user_id: int
    order: int  # the place key in the line


def sign_queue(event_id: int, user_id: int, order: int) -> str:
    shown = EARLY if order < 2**DRAW_BITS else str(order)
    return _signed(f"{QUEUE_PREFIX}.{event_id}.{user_id}.{shown}")


def read_queue(token: str | None, event_id: int, user_id: int) -> QueuePass | None:
    """The place a queue token vouches for, if it is genuine and names this event and user."""
    fields = _fields(token, QUEUE_PREFIX)
    if fields is None or fields[:2] != (event_id, user_id):
        return None
    if fields[2] == EARLY:
        return QueuePass(event_id, user_id, early_draw(event_id, user_id))
    if not fields[2].isdigit():
        return None
    return QueuePass(event_id, user_id, int(fields[2]))


def queue_holder(token: str | None, event_id: int) -> int | None:
    """The user a genuine queue token of this event belongs to (a WebSocket's credential)."""
    fields = _fields(token, QUEUE_PREFIX)
    return fields[1] if fields is not None and fields[0] == event_id else None


def sign_admission(event_id: int, user_id: int, expires_ms: int) -> str:
    return _signed(f"{ADMISSION_PREFIX}.{event_id}.{user_id}.{expires_ms}")


def admission_expiry(token: str | None, event_id: int, user_id: int) -> int | None:
    """When a genuine admission token for this event and user expires (ms since the
    epoch); None for a forged one, or one issued to another user or for another event."""
    fields = _fields(token, ADMISSION_PREFIX)
    if fields is None or fields[:2] != (event_id, user_id) or not fields[2].isdigit():
        return None
    return int(fields[2])
