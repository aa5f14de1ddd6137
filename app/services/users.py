"""Accounts: registration, login, roles.

Password hashes are made and checked in `security.hasher`'s threads, off the event loop,
and never while this unit of work holds a database connection: a login rush then costs
hashing threads only, not the connections that buyers and readers need.
"""

from sqlalchemy.exc import IntegrityError

from app.core import memo
from app.core.config import get_settings
from app.core.db import UnitOfWork
from app.core.errors import Conflict, InvalidState, NotAuthenticated, NotFound
from app.core.security import hasher
from app.crud import users as crud
from app.infra import ratelimit
from app.models import Role, User
from app.schemas.user import UserCreate, UserRead

_dummy_hashes: dict[int, str] = {}  # bcrypt cost -> a hash of nobody's password


async def _dummy_hash() -> str:
    """Checked when the e-mail is unknown, so a failed login takes as long either way."""
    rounds = get_settings().bcrypt_rounds
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = await hasher.hash("not-a-real-password")
    return _dummy_hashes[rounds]


async def register(uow: UnitOfWork, data: UserCreate, client_ip: str = "") -> UserRead:
    """Create a customer account; the role is never taken from the request."""
    await ratelimit.hit(ratelimit.register_per_ip(), client_ip)
    password_hash = await hasher.hash(data.password)  # before the database is touched
    email = data.email.lower()
    if await crud.get_by_email(uow.session, email) is not None:
        raise Conflict("An account with this e-mail already exists.")
    user = crud.add(
        uow.session,
        User(
            email=email,
            full_name=data.full_name,
            password_hash=password_hash,
            role=Role.CUSTOMER,
            is_active=True,
        ),
    )
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # the same e-mail registered at the same moment
        raise Conflict("An account with this e-mail already exists.") from exc
    await uow.session.refresh(user)
    return UserRead.model_validate(user)


async def login(uow: UnitOfWork, email: str, password: str, client_ip: str) -> int:
    """`authenticate`, rate limited per address and per account's failed attempts."""
    account = email.strip().lower()
    await ratelimit.hit(ratelimit.login_per_ip(), client_ip)
    await ratelimit.check(ratelimit.login_failures(), account)
    try:
        return await authenticate(uow, account, password)
    except NotAuthenticated:
        await ratelimit.hit(ratelimit.login_failures(), account)
        raise


async def authenticate(uow: UnitOfWork, email: str, password: str) -> int:
    """The id of the active user with these credentials, else `NotAuthenticated`."""
    found = await crud.credentials(uow.session, email)
    await uow.release()  # the connection goes back to the pool before the slow part
    if found is None:
        await hasher.verify(password, await _dummy_hash())
        raise NotAuthenticated("Incorrect e-mail or password.")
    if not await hasher.verify(password, found.password_hash) or not found.is_active:
        raise NotAuthenticated("Incorrect e-mail or password.")
    return found.id


async def active_user(uow: UnitOfWork, user_id: int) -> User:
    """The user a valid token names, if the account still exists and is active.

    Remembered per process for `memo.ACCOUNT_TTL_S` (loading the user was the largest
    single cost of a hold): a role change or a disabled account is seen by every process
    within that time, and at once by the process that made it.
    """
    cached: User | None = memo.accounts.get(user_id)
    if cached is not None:
        return cached
    user = await crud.get(uow.session, user_id)
    if user is None or not user.is_active:
        memo.accounts.pop(user_id, None)
        raise NotAuthenticated("The account behind this token no longer exists or is disabled.")
    uow.session.expunge(user)  # shared, read-only, across requests of this process
    # Hand the connection back now: the use case may do other work (rate limits, Redis)
    # before its own first statement, and must not keep a pooled connection idle meanwhile.
    await uow.release()
    memo.accounts[user_id] = user
    return user


def _forget_after_commit(uow: UnitOfWork, user_id: int) -> None:
    async def forget() -> None:
        memo.accounts.pop(user_id, None)

    uow.after_commit(forget)


async def set_role(uow: UnitOfWork, admin: User, user_id: int, role: Role) -> UserRead:
    """Promote or demote a user; an admin cannot demote themselves (no lock-out)."""
    user = await crud.get(uow.session, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    if user.id == admin.id and role != Role.ADMIN:
        raise InvalidState("You cannot remove your own admin role; ask another admin.")
    user.role = role
    await uow.session.flush()
    _forget_after_commit(uow, user.id)
    return UserRead.model_validate(user)


async def set_active(uow: UnitOfWork, user_id: int, active: bool) -> UserRead:
    """Enable or disable an account. A disabled account's tokens are refused (401) by this
    process as soon as the change commits, by the others within `memo.ACCOUNT_TTL_S`."""
    user = await crud.get(uow.session, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    user.is_active = active
    await uow.session.flush()
    _forget_after_commit(uow, user.id)
    return UserRead.model_validate(user)


async def ensure_user(
    uow: UnitOfWork, email: str, password: str, role: Role, full_name: str = ""
) -> tuple[User, bool]:
    """Create the user, or give an existing one `role`; (user, created). For CLIs and seeds.

    The hash is made first, so a fresh unit of work holds no connection while it runs
    (and it waits for a hashing thread rather than being refused)."""
    password_hash = await hasher.hash(password, wait=True)
    user = await crud.get_by_email(uow.session, email)
    created = user is None
    if user is None:
        user = crud.add(
            uow.session,
            User(
                email=email.lower(),
                full_name=full_name,
                password_hash=password_hash,
                role=role,
            ),
        )
    else:
        user.role = role
    await uow.session.flush()
    _forget_after_commit(uow, user.id)
    return user, created
