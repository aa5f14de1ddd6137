"""Command line: `python -m app.cli create-admin --email E --password P`, `seed-demo`,
`verify-ticket --keys keys.json [--revoked revoked.json] CODE`.

The administration commands import the database layers when they run, not here: the
ticket verifier is for door scanners, offline, and must work with no database, no
settings and no secret (importing the services reads the settings).
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from app.core import ticket_codes
from app.schemas.user import Password, UserCreate

T = TypeVar("T")


async def _create_admin(email: str, password: str) -> str:
    from app.core.db import transaction
    from app.models import Role
    from app.services import users

    async with transaction() as uow:
        user, created = await users.ensure_user(uow, email, password, Role.ADMIN)
    action = "Created" if created else "Promoted existing user"
    return f"{action} {user.email} (id {user.id}) as admin."


def create_admin(args: argparse.Namespace) -> int:
    try:
        UserCreate(email=args.email, password=args.password)
        TypeAdapter(Password).validate_python(args.password)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: {problems}", file=sys.stderr)
        return 2
    print(asyncio.run(_with_engine(_create_admin(args.email, args.password))))
    return 0


async def _seed_demo() -> list[str]:
    from app.core.db import transaction
    from app.services import demo

    async with transaction() as uow:
        return await demo.seed(uow)


def seed_demo(_: argparse.Namespace) -> int:
    for line in asyncio.run(_with_engine(_seed_demo())):
        print(f"  {line}")
    return 0


async def _with_engine(work: Awaitable[T]) -> T:
    from app.core.db import db

    try:
        return await work
    finally:
        await db.dispose()


def verify_ticket(args: argparse.Namespace) -> int:
    """0 and `valid: ...` for a genuine, unrevoked ticket; 1 and `invalid: why` if not;
    2 when a keys or revocation file cannot be read."""
    try:
        event_id, keys = ticket_codes.load_keys(_json(args.keys))
        pages = _pages(_json(args.revoked)) if args.revoked else []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot read the keys or revocation list: {exc}", file=sys.stderr)
        return 2
    try:
        claim = ticket_codes.verify(args.code, keys)
        if claim.event_id != event_id:
            raise ticket_codes.InvalidTicket(f"for event {claim.event_id}, not {event_id}")
        if claim.code in ticket_codes.revoked_codes(pages, event_id, keys):
            raise ticket_codes.InvalidTicket(f"ticket {claim.code} was cancelled (revoked)")
    except ticket_codes.InvalidTicket as exc:
        print(f"invalid: {exc}")
        return 1
    print(f"valid: event {claim.event_id} seat {claim.seat_id} code {claim.code} key {claim.kid}")
    return 0


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _pages(document: Any) -> list[dict[str, Any]]:
    return list(document) if isinstance(document, list) else [document]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description="Evently administration")
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create the first admin (or promote a user)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.set_defaults(handler=create_admin)
    seed = commands.add_parser("seed-demo", help="demo accounts and events (idempotent)")
    seed.set_defaults(handler=seed_demo)
    verify = commands.add_parser(
        "verify-ticket", help="check a ticket code offline, against published keys (no database)"
    )
    verify.add_argument("--keys", required=True, type=Path, help="GET /events/{id}/ticket-keys")
    verify.add_argument(
        "--revoked",
        type=Path,
        help="GET /events/{id}/revoked-tickets: one page, or a JSON list of pages",
    )
    verify.add_argument("code", help="the QR payload, EVT2.<kid>.<event>.<seat>.<code>.<sig>")
    verify.set_defaults(handler=verify_ticket)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
