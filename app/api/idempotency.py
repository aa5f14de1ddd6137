"""`Idempotency-Key` at the edge: the first response to a key is stored and replayed.

Routes that accept the header run their use case through `respond_once`, which is also
their commit point: it claims the key, runs the use case, stores the encoded response in
the same transaction and commits once, before the response is sent. A request that
fails (409, 402, a crash) rolls back its claim with everything else, so the key can be
retried; a stored response always matches committed effects.
"""

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel

from app.core.db import UnitOfWork
from app.core.errors import Conflict, IdempotencyMismatch
from app.infra import idempotency as store
from app.services.inventory import contention

JSON = "application/json"


def fingerprint(operation: str, payload: Any) -> str:
    """A stable hash of what was asked: the operation and its body."""
    encoded = orjson.dumps({"op": operation, "body": payload}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()


async def respond_once(
    uow: UnitOfWork,
    user_id: int,
    key: str | None,
    asked: tuple[str, Any],
    use_case: Callable[[], Awaitable[BaseModel]],
    status_code: int = 200,
) -> Response:
    """Run `use_case` and commit, unless this key already has a stored response.

    `asked` is (operation, body): a key reused for anything else is refused (422).
    """
    request_fingerprint = fingerprint(*asked)
    if key is not None and not await _claim(uow, user_id, key, request_fingerprint):
        record = await store.get(uow.session, user_id, key)
        if record is None or record.fingerprint != request_fingerprint:
            raise IdempotencyMismatch()
        return Response(record.response, status_code=record.status_code, media_type=JSON)
    body = (await use_case()).model_dump_json().encode()
    if key is not None:
        await store.store_response(uow.session, user_id, key, status_code, body)
    await uow.commit()
    return Response(body, status_code=status_code, media_type=JSON)


async def _claim(uow: UnitOfWork, user_id: int, key: str, request_fingerprint: str) -> bool:
    with contention(Conflict("A request with this Idempotency-Key is still in progress.")):
        return await store.claim(uow.session, user_id, key, request_fingerprint)
