"""The bootstrap CLI, run as a real process against the test database."""

import os
import subprocess
import sys

from sqlalchemy import text

from app.core.db import db


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=False,
    )


async def role_of(email: str) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.scalar(text("SELECT role FROM users WHERE email = :e"), {"e": email})


class TestCreateAdmin:
    async def test_creates_then_promotes_idempotently(self, client) -> None:
        first = run_cli(
            "create-admin", "--email", "Root@Example.com", "--password", "very-secret-1"
        )
        assert first.returncode == 0, first.stderr
        assert "Created root@example.com" in first.stdout
        assert await role_of("root@example.com") == "admin"
        again = run_cli(
            "create-admin", "--email", "root@example.com", "--password", "very-secret-1"
        )
        assert again.returncode == 0
        assert "Promoted existing user" in again.stdout
        login = await client.post(
            "/auth/login", data={"username": "root@example.com", "password": "very-secret-1"}
        )
        assert login.status_code == 200

    async def test_promotes_an_existing_customer(self, client) -> None:
        await client.post(
            "/auth/register", json={"email": "cust@example.com", "password": "customer-pass"}
        )
        result = run_cli(
            "create-admin", "--email", "cust@example.com", "--password", "ignored-pass"
        )
        assert result.returncode == 0
        assert await role_of("cust@example.com") == "admin"

    def test_bad_input_is_explained(self) -> None:
        result = run_cli("create-admin", "--email", "nope", "--password", "x")
        assert result.returncode == 2
        assert "email" in result.stderr
        assert "password" in result.stderr
