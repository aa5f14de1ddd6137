#!/bin/sh
# Container entry point.
#   api (the default): migrate the database, then serve the API with uvicorn.
#   anything else:     run it as given, e.g. `celery -A app.worker ... worker`.
set -eu

if [ "${1:-api}" = "api" ]; then
    # Migrating here keeps `docker compose up` a one-step start; alembic's version table
    # makes it a no-op when the schema is already current.
    alembic upgrade head
    exec uvicorn app.main:app --host 0.0.0.0 --port "${PORT:-8000}" --proxy-headers --loop uvloop --http httptools --no-access-log
fi
exec "$@"
