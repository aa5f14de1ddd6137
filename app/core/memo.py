"""Per-process memory: small, bounded caches of things that are costly to fetch on every
request and harmless to serve a little late. Every such cache in Evently is made here, so
this table is the whole list of what a process may answer from memory:

| cache            | maps                        | may serve stale                  | for at most |
|------------------|-----------------------------|----------------------------------|-------------|
| `verified_tokens`| access token -> user id     | nothing (a signed token's claims | until the   |
|                  |                             | never change)                    | token's exp |
| `accounts`       | user id -> active `User`    | a role change, or an account     | ACCOUNT_TTL |
|                  |                             | disabled or deleted, by another  | _S (5 s)    |
|                  |                             | process or straight in the       |             |
|                  |                             | database                         |             |
| `seat_ranges`    | event id -> (min, max seat) | nothing (seat ids are fixed when | forever     |
|                  |                             | the event is created)            |             |
| `seat_layouts`   | event id -> encoded seats   | nothing (a seat's id, label,     | forever     |
|                  | (everything but status)     | place and price never change)    |             |
| `sale_gates`     | event id -> its sale start  | a changed sale start or waiting- | SALE_GATE_  |
|                  | and waiting-room settings   | room setting made by another     | TTL_S (5 s) |
|                  | (`services.waiting_room`)   | process                          |             |

The process that changes an account forgets it at once (`accounts.pop` after commit):
`users.set_role`, `users.set_active`, `users.ensure_user`. Other processes see the change
within ACCOUNT_TTL_S, so a disabled or deleted account keeps its access for 5 s at most
(its tokens stay in `verified_tokens`, but every request but the waiting room's join, poll
and leave, which trust the token alone, also needs the account). Each process reads an
account at most once per ACCOUNT_TTL_S however many requests its user sends: a shorter
time means more reads during a sale. The same goes for an event's sale
settings (`sale_gates`, read by every hold: without it each hold would pay a round trip
to learn whether the event has a waiting room). Eviction is least-recently-used, so
memory stays bounded whatever the traffic (`seat_layouts` by their size in bytes: a
50,000-seat stadium takes about 17 MB).
"""

import time
from typing import Any

from cachetools import LRUCache, TLRUCache, TTLCache

ACCOUNT_TTL_S = 5.0
SALE_GATE_TTL_S = 5.0
SEAT_LAYOUT_BYTES = 128 * 1024 * 1024


class Sized:
    size: int


def _size(value: Sized) -> int:
    return value.size


def _until_exp(_key: str, value: tuple[int, float], _now: float) -> float:
    return value[1]  # a verified token is remembered until it expires


verified_tokens: TLRUCache[str, tuple[int, float]] = TLRUCache(
    maxsize=50_000, ttu=_until_exp, timer=time.time
)
accounts: TTLCache[int, Any] = TTLCache(maxsize=20_000, ttl=ACCOUNT_TTL_S)
seat_ranges: LRUCache[int, tuple[int, int]] = LRUCache(maxsize=10_000)
seat_layouts: LRUCache[int, Any] = LRUCache(maxsize=SEAT_LAYOUT_BYTES, getsizeof=_size)
sale_gates: TTLCache[int, Any] = TTLCache(maxsize=10_000, ttl=SALE_GATE_TTL_S)


def forget_all() -> None:
    """Empty every cache (tests, whose ids restart with each test)."""
    for cache in (verified_tokens, accounts, seat_ranges, seat_layouts, sale_gates):
        cache.clear()
