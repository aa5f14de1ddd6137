"""Command line: `python -m app.cli create-admin --email E --password P`, `seed-demo`."""

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from app.core.db import db, transaction
from app.models import Role
from app.schemas.user import Password, UserCreate
from app.services import demo, users

T = TypeVar("T")


async def _create_admin(email: str, password: str) -> str:
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
    async with transaction() as uow:
        return await demo.seed(uow)


def seed_demo(_: argparse.Namespace) -> int:
    for line in asyncio.run(_with_engine(_seed_demo())):
        print(f"  {line}")
    return 0


async def _with_engine(work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description="Evently administration")
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create the first admin (or promote a user)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.set_defaults(handler=create_admin)
    seed = commands.add_parser("seed-demo", help="demo accounts and events (idempotent)")
    seed.set_defaults(handler=seed_demo)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
