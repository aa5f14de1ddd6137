"""Settings, errors, OpenAPI, health: the parts every route relies on."""

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.crud import inventory
from app.main import api


class TestSettings:
    def test_placeholder_secret_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            Settings(app_env="production", secret_key="change-me")
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            Settings(app_env="production", secret_key="short-but-not-placeholder")

    def test_strong_secret_accepted_and_dev_default_allowed(self) -> None:
        assert Settings(app_env="production", secret_key="k" * 48).app_env == "production"
        assert Settings(app_env="development", secret_key="change-me").is_development

    def test_no_setting_turns_seat_locks_off(self) -> None:
        """The negative control swaps a statement in its own test; production has no switch."""
        assert "booking_locks_enabled" not in Settings.model_fields
        assert "FOR UPDATE" in inventory.CHOSEN_SEATS.sql
        assert "SKIP LOCKED" in inventory.CHOSEN_SEATS.sql


class TestErrors:
    async def test_unknown_route_is_json_404(self, client) -> None:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    async def test_malformed_json_is_422(self, client) -> None:
        response = await client.post(
            "/auth/register", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_out_of_range_path_id_is_422_not_500(self, client) -> None:
        assert (await client.get("/events/99999999999")).status_code == 422
        assert (await client.get("/events/0")).status_code == 422

    async def test_request_id_is_echoed(self, client) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
        generated = await client.get("/health")
        assert len(generated.headers["x-request-id"]) == 32


class TestOpenAPI:
    def test_every_route_declares_its_errors(self) -> None:
        schema = api.openapi()
        for path, methods in schema["paths"].items():
            if path.startswith("/health"):
                continue
            for method, operation in methods.items():
                codes = set(operation["responses"])
                if operation.get("parameters") or operation.get("requestBody"):
                    assert "422" in codes, (method, path)
                if path.startswith(("/bookings", "/admin")) or path == "/auth/me":
                    assert "401" in codes, (method, path)

    def test_hold_documents_conflict_and_login_is_oauth2_form(self) -> None:
        schema = api.openapi()
        hold = schema["paths"]["/bookings/"]["post"]
        assert {"201", "409"} <= set(hold["responses"])
        assert "OAuth2PasswordBearer" in schema["components"]["securitySchemes"]


class TestHealth:
    async def test_liveness_and_readiness(self, client) -> None:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "up", "redis": "up", "broker": "up"}


def test_every_setting_is_documented_in_env_example() -> None:
    from pathlib import Path

    documented = Path(__file__).resolve().parent.parent.joinpath(".env.example").read_text()
    missing = [
        name.upper() for name in Settings.model_fields if name.upper() + "=" not in documented
    ]
    assert missing == []
