"""`make bench`: the production-like load benchmark (see docs/PERFORMANCE.md).

Starts uvicorn (uvloop, httptools, several workers, no reload, logs to a file) against a
database and a Redis database of its own, seeds a data set, runs the scenarios with wrk
or a small asyncio load generator, checks the booking invariants in PostgreSQL after
every booking scenario, prints a table and writes it as JSON and Markdown under
`bench-results/`, then stops everything it started.
"""
