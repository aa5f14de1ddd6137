"""`Idempotency-Key` handling: the first response to a key is stored and replayed."""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from app.core.db import UnitOfWork, is_lock_failure
from app.core.errors import Conflict, IdempotencyMismatch
from app.crud import idempotency as crud


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: bytes  # encoded JSON, sent as-is
    replayed: bool = False


def fingerprint(operation: str, payload: Any) -> str:
    """A stable hash of what was asked: the operation and its body."""
    encoded = orjson.dumps({"op": operation, "body": payload}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


async def run_once(
    uow: UnitOfWork,
    user_id: int,
    key: str | None,
    request_fingerprint: str,
    action: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    """Run `action` and commit, unless this key already has a stored response.

    The key is reserved and the response stored inside the action's own transaction, so
    a request that fails (409, 402, a crash) leaves no record behind and can be retried
    with the same key, and a stored response always matches committed effects.
    """
    if key is not None and not await _claim(uow, user_id, key, request_fingerprint):
        record = await crud.get(uow.session, user_id, key)
        if record is None or record.fingerprint != request_fingerprint:
            raise IdempotencyMismatch()
        outcome = Outcome(record.status_code, record.response, replayed=True)
        await uow.rollback()  # nothing to write: the stored response is the answer
        return outcome
    outcome = await action()
    if key is not None:
        await crud.store_response(uow.session, user_id, key, outcome.status_code, outcome.body)
    await uow.commit()
    return outcome


async def _claim(uow: UnitOfWork, user_id: int, key: str, request_fingerprint: str) -> bool:
    try:
        return await crud.claim(uow.session, user_id, key, request_fingerprint)
    except DBAPIError as exc:
        if is_lock_failure(exc):
            raise Conflict("A request with this Idempotency-Key is still in progress.") from exc
        raise
