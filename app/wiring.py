"""Start-up wiring, in one place: what the API process and the worker connect before
they serve. Nothing else in `app` registers anything at import time."""

from app.core.redis import redis
from app.infra import cache, outbox
from app.services import notifications, webhook_delivery

_wired = False


def wire() -> None:
    """Connect the parts (idempotent; called by `app.main` and the Celery worker)."""
    global _wired
    if _wired:
        return
    # An invalidation lost while Redis was away flushes the cache once it is back.
    redis.on_recovery.append(cache.flush_after_outage)
    # Outbox jobs are run by the notification code.
    outbox.register(notifications.HANDLERS)
    outbox.register(webhook_delivery.HANDLERS)
    _wired = True
