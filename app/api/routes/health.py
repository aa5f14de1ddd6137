from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.infra import health

router = APIRouter(tags=["health"])


@router.get("/health")
async def liveness() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "A dependency is down"}})
async def readiness() -> JSONResponse:
    """PostgreSQL, Redis and broker state. 503 only when PostgreSQL is down: without Redis
    reads come from PostgreSQL, and jobs wait in the outbox until the broker is back."""
    checks = await health.readiness()
    ready = checks["database"] == "up"
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)
