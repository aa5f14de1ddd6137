"""Application settings: one object, read from the environment (and `.env`)."""

from datetime import datetime
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev-secret-change-me"})
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Every tunable of Evently; names match the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    secret_key: str = "dev-secret-change-me"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/evently"
    redis_url: str = "redis://127.0.0.1:6379/0"

    access_token_minutes: int = Field(default=60, ge=1)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # bcrypt runs off the event loop in this many threads per process; this many more
    # hashes may wait for them, and past that a login or sign-up is answered 503 at once.
    password_hash_threads: int = Field(default=1, ge=1)
    password_hash_queue: int = Field(default=8, ge=0)
    hold_minutes: int = Field(default=10, ge=1)
    # How many times a buyer may renew a pending hold (POST /bookings/{id}/extend).
    hold_max_renewals: int = Field(default=2, ge=0)
    max_seats_per_user_per_event: int = Field(default=10, ge=1)
    lock_timeout_ms: int = Field(default=2000, ge=10)
    statement_timeout_ms: int = Field(default=15000, ge=100)
    db_pool_size: int = Field(default=20, ge=1)
    # No overflow by default: connections opened for a burst and closed after it cost a
    # PostgreSQL process each; a fixed pool queues briefly instead (measured faster).
    db_max_overflow: int = Field(default=0, ge=0)
    # A small pool of its own for rebuilding cached seat maps and live counts, so a rush
    # of bookings holding every main connection cannot stop the cache from refreshing.
    db_read_pool_size: int = Field(default=3, ge=1)
    # Longest a request waits for a pooled connection before it is answered 503.
    db_pool_timeout_s: float = Field(default=0.5, gt=0)

    # Celery: broker (defaults to REDIS_URL), how long an unacknowledged job stays invisible
    # before another worker gets it, and when the relay re-sends jobs that never finished.
    celery_broker_url: str | None = None
    celery_visibility_timeout_s: int = Field(default=600, ge=1)
    outbox_retry_after_s: int = Field(default=300, ge=1)
    waitlist_offer_minutes: int = Field(default=30, ge=1)
    # Simulated e-mail: how long "sending" takes (0 = instant); a slow provider in tests.
    notification_delay_ms: int = Field(default=0, ge=0)

    cache_enabled: bool = True
    # How old the data of a cached event view (seat map, status, detail) may be, after a
    # seat change, before one reader rebuilds it; others keep the stale bytes meanwhile.
    cache_max_stale_ms: int = Field(default=500, ge=0, le=5000)
    rate_limit_enabled: bool = True
    rate_limit_login_ip: str = "20/minute"
    rate_limit_login_failures: str = "5/minute"
    rate_limit_register_ip: str = "10/minute"
    rate_limit_hold_user: str = "30/minute"
    rate_limit_queue_join_ip: str = "30/minute"

    # Waiting room: after Redis lost a line, admissions pause this long while the people
    # in it come back with their queue tokens, so they are admitted in their old order.
    queue_rebuild_s: int = Field(default=10, ge=0, le=600)

    # Largest request body accepted, in bytes; larger ones are answered 413 before they are
    # read (Content-Length) or as soon as the streamed chunks pass it (chunked uploads).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Browser origins allowed to call the API (CORS), comma-separated, e.g.
    # "https://tickets.example.com,http://localhost:5173"; "*" allows any. Empty: no CORS
    # headers at all, so browsers refuse cross-origin calls (the API is closed by default).
    cors_origins: str = ""

    # Tickets: HMAC (EVT1) codes of tickets issued before Ed25519 (EVT2) still check in,
    # until this instant when set (unset: for as long as those tickets exist).
    ticket_hmac_accepted_until: datetime | None = None

    # Organizer webhooks: how long one POST may take, the retry backoff (doubling from
    # the base, capped), how long a delivery is retried before its webhook is disabled,
    # and how often beat sweeps for deliveries that are due again.
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=30)
    webhook_retry_base_s: float = Field(default=30.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_retry_window_s: int = Field(default=24 * 3600, ge=1)
    webhook_sweep_s: float = Field(default=5.0, gt=0)

    # GET /metrics (Prometheus) and the request metrics behind it; false removes both.
    # With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`.
    metrics_enabled: bool = True
    metrics_token: str = ""

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON when stdout is not a terminal

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.app_env == "development" or self.app_env == "test":
            return self
        if self.secret_key in PLACEHOLDER_SECRETS or len(self.secret_key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"SECRET_KEY must be a random string of at least {MIN_SECRET_LENGTH} characters "
                "outside development; generate one with: "
                'python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return self

    @model_validator(mode="after")
    def _check_cors_origins(self) -> "Settings":
        for origin in self.cors_origin_list:
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or origin.endswith("/")
            ):
                raise ValueError(
                    f"CORS_ORIGINS: {origin!r} is not an origin; write scheme://host[:port] "
                    "with no path or trailing slash (a browser sends exactly that), or *"
                )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def is_development(self) -> bool:
        return self.app_env == "development"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
