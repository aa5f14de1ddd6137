"""Password hashing, access tokens, and signed ticket payloads."""

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import bcrypt
from jose import JWTError, jwt

from app.core import memo
from app.core.config import get_settings
from app.core.errors import Busy, NotAuthenticated

T = TypeVar("T")

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72
TICKET_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a door


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(get_settings().bcrypt_rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    encoded = password.encode()
    if len(encoded) > BCRYPT_MAX_BYTES:
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())


class PasswordHasher:
    """bcrypt off the event loop: PASSWORD_HASH_THREADS threads per process, with at most
    PASSWORD_HASH_QUEUE more hashes waiting for them.

    A hash at cost 12 takes a quarter of a second of CPU. On the loop it stalled every
    request of the process; bcrypt releases the GIL, so in a thread it does not. Past the
    bound a login is refused at once (`Busy`: 503 with an estimated Retry-After) rather than
    queued behind seconds of hashing. The caller must hold no database connection meanwhile.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._made_for = (0, 0)  # (process id, threads)
        self._lock = threading.Lock()
        self.in_flight = 0  # admitted: hashing, or waiting for a thread
        self.seconds: float | None = None  # one hash, measured (moving average)

    async def hash(self, password: str, *, wait: bool = False) -> str:
        """A new bcrypt hash. `wait=True` (scripts, seeds) queues beyond the bound."""
        return await self._run(lambda: hash_password(password), wait=wait)

    async def verify(self, password: str, password_hash: str) -> bool:
        return await self._run(lambda: verify_password(password, password_hash), wait=False)

    async def _run(self, work: Callable[[], T], *, wait: bool) -> T:
        self._admit(wait)
        try:
            future = self._pool().submit(self._timed, work)
        except BaseException:
            self._release()
            raise
        # Released when the hash is done, or dropped unstarted if the caller went away.
        future.add_done_callback(self._finished)
        return await asyncio.wrap_future(future)

    def _admit(self, wait: bool) -> None:
        settings = get_settings()
        with self._lock:
            bound = settings.password_hash_threads + settings.password_hash_queue
            if self.in_flight >= bound and not wait:
                raise Busy(retry_after=self.retry_after())
            self.in_flight += 1

    def retry_after(self) -> int:
        """Seconds until the hashes admitted now are done: queue length x measured time."""
        threads = get_settings().password_hash_threads
        return max(1, math.ceil(self.in_flight / threads * self._estimate()))

    def _estimate(self) -> float:
        if self.seconds is not None:
            return self.seconds
        return 0.25 * 2.0 ** (get_settings().bcrypt_rounds - 12)  # cost 12: ~0.25 s

    def _timed(self, work: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return work()
        finally:
            took = time.perf_counter() - started
            self.seconds = took if self.seconds is None else 0.8 * self.seconds + 0.2 * took

    def _finished(self, _: "Future[Any]") -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _pool(self) -> ThreadPoolExecutor:
        wanted = (os.getpid(), get_settings().password_hash_threads)
        if self._executor is None or self._made_for != wanted:  # threads do not survive fork
            if self._executor is not None and self._made_for[0] == wanted[0]:
                self._executor.shutdown(wait=False)
            self._executor = ThreadPoolExecutor(
                wanted[1], thread_name_prefix="bcrypt", initializer=_lower_priority
            )
            self._made_for = wanted
        return self._executor


hasher = PasswordHasher()
HASH_THREAD_NICE = 10


def _lower_priority() -> None:
    """Hashing threads yield the CPU to request handling (Linux nice is per thread).

    Measured on 2 busy CPUs, 9 logins at cost 12 while liveness checks and seat-map reads
    ran (medians of 6 alternating runs): those reads went from p50 2.5 / p99 20.9 ms to
    1.5 / 12.5 ms. The price, when other processes want the CPU too, is slower logins (9
    took 5.1 s instead of 3.9 s): buyers and readers first, as intended."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICE)


def create_access_token(user_id: int, *, minutes: int | None = None) -> str:
    settings = get_settings()
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=minutes if minutes is not None else settings.access_token_minutes)
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime, "typ": "access"}
    return str(jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM))


def decode_access_token(token: str) -> int:
    """The user id in a valid access token; `NotAuthenticated` for anything else.

    A client sends the same token with every request, and checking its signature each
    time was a fifth of a hold's authentication cost: verified tokens are remembered
    (`memo.verified_tokens`) until they expire.
    """
    known = memo.verified_tokens.get(token)
    if known is not None:
        return known[0]
    user_id, expires = _decode(token)
    memo.verified_tokens[token] = (user_id, expires)
    return user_id


def _decode(token: str) -> tuple[int, float]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[ALGORITHM],  # pinned: `alg: none` and algorithm swaps are refused
            options={"require_exp": True, "require_sub": True},
        )
    except JWTError as exc:
        raise NotAuthenticated("The access token is invalid or has expired.") from exc
    subject = claims.get("sub")
    if claims.get("typ") != "access" or not isinstance(subject, str) or not subject.isdigit():
        raise NotAuthenticated("The access token is invalid or has expired.")
    return int(subject), float(claims["exp"])


def new_ticket_code() -> str:
    return "".join(secrets.choice(TICKET_CODE_ALPHABET) for _ in range(12))


def _ticket_key() -> bytes:
    # A key derived for this one purpose, so a ticket signature can never pass as a JWT.
    return hmac.new(
        get_settings().secret_key.encode(), b"evently-ticket-v1", hashlib.sha256
    ).digest()


def sign_ticket(event_id: int, seat_id: int, code: str) -> str:
    """`EVT1.<event>.<seat>.<code>.<hmac>`: checkable at the door without the database."""
    payload = f"EVT1.{event_id}.{seat_id}.{code}"
    return f"{payload}.{_ticket_signature(payload)}"


def verify_ticket(qr_code_data: str) -> tuple[int, int, str] | None:
    """(event id, seat id, code) when the signature is right, else None."""
    parts = qr_code_data.strip().split(".")
    if len(parts) != 5 or parts[0] != "EVT1" or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    payload = ".".join(parts[:4])
    if not hmac.compare_digest(_ticket_signature(payload), parts[4]):
        return None
    return int(parts[1]), int(parts[2]), parts[3]


def _ticket_signature(payload: str) -> str:
    return hmac.new(_ticket_key(), payload.encode(), hashlib.sha256).hexdigest()[:32]
