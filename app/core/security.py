"""Password hashing, access tokens, and signed ticket payloads."""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
from jose import JWTError, jwt

from app.core import memo
from app.core.config import get_settings
from app.core.errors import NotAuthenticated

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
