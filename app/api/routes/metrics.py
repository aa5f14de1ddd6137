"""`GET /metrics`: Prometheus text exposition, for operators (not in the OpenAPI document).

Open by default, as Prometheus scrapes it; METRICS_TOKEN makes it require
`Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`), and
METRICS_ENABLED=false removes it (and the request metrics) altogether.
"""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from app.api.metrics import tally
from app.core import metrics
from app.core.config import get_settings
from app.core.errors import NotAuthenticated
from app.services import metrics as service

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def scrape(authorization: Annotated[str | None, Header()] = None) -> Response:
    token = get_settings().metrics_token
    if token and not hmac.compare_digest(
        (authorization or "").encode(), f"Bearer {token}".encode()
    ):
        raise NotAuthenticated("Send `Authorization: Bearer <METRICS_TOKEN>`.")
    tally.flush()  # this process's latest requests, not a second old
    return Response(await service.scrape(), media_type=metrics.CONTENT_TYPE)
