"""Plumbing that use cases rely on but that no user asks for by name: the seat-map cache,
live fan-out, the job outbox, rate limits, stored idempotent responses, health checks.

Imports only `app.core` and `app.models`; `app.services` and `app.api` use it.
"""
