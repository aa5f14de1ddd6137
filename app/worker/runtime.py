"""One event loop per worker process, so async services run from sync Celery tasks.

The loop is created on first use in each process (a forked pool child gets its own) and
kept for the life of the process, and the database engine is built on it: never
`asyncio.run()` per task, which would strand pooled connections on dead loops.
"""

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    global _loop, _pid
    if _loop is None or _pid != os.getpid():
        _loop, _pid = asyncio.new_event_loop(), os.getpid()
        asyncio.set_event_loop(_loop)
    return _loop.run_until_complete(coro)
