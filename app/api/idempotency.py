"""`Idempotency-Key` at the edge: the first response to a key is stored and replayed.

A route that accepts the header calls `replay_or_claim` first (a stored response is the
answer, else the key is claimed in this transaction), then its use case, then
`commit_response`, its commit point: it stores the encoded response in the same
transaction and commits once, before the response is sent. A request that fails (409,
402, a crash) rolls back its claim with everything else, so the key can be retried; a
stored response always matches committed effects.
"""

import hashlib
from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel

from app.core.db import UnitOfWork
from app.core.errors import Conflict, IdempotencyMismatch
from app.infra import idempotency as store
from app.services.inventory import contention

JSON = "application/json"
IN_PROGRESS = "A request with this Idempotency-Key is still in progress."


def fingerprint(operation: str, payload: Any) -> str:
    """A stable hash of what was asked: the operation and its body."""
    encoded = orjson.dumps({"op": operation, "body": payload}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


async def replay_or_claim(
    uow: UnitOfWork, user_id: int, key: str | None, asked: tuple[str, Any]
) -> Response | None:
    """The stored response to this key, or None once the key is claimed (or absent).

    `asked` is (operation, body): a key reused for anything else is refused (422). A
    request with the same key still running makes this wait on the key's unique index,
    up to `lock_timeout` (then 409).
    """
    if key is None:
        return None
    request_fingerprint = fingerprint(*asked)
    with contention(lambda: Conflict(IN_PROGRESS)):
        claimed = await store.claim(uow.session, user_id, key, request_fingerprint)
    if claimed:
        return None
    record = await store.get(uow.session, user_id, key)
    if record is None or record.fingerprint != request_fingerprint:
        raise IdempotencyMismatch()
    return Response(record.response, status_code=record.status_code, media_type=JSON)


async def commit_response(
    uow: UnitOfWork, user_id: int, key: str | None, result: BaseModel, status_code: int = 200
) -> Response:
    """Encode `result`, store it under the key (if any), and commit: the request's one
    commit, before the response is sent."""
    body = result.model_dump_json().encode()
    if key is not None:
        await store.store_response(uow.session, user_id, key, status_code, body)
    await uow.commit()
    return Response(body, status_code=status_code, media_type=JSON)
