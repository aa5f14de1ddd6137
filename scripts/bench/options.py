"""Command-line options and the two data-set sizes (full and `--quick`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"

# In the order they run; read-uncached first, on its own server with the cache off.
SCENARIOS = (
    "read-uncached",
    "read-cached",
    "events-list",
    "hot-event",
    "ga-rush",
    "spread",
    "confirm-flow",
    "onsale",
    "stadium",
    "waiting-room",
    "login-rush",  # last: on a server of its own, with the production password hashing
)
BOOKING_SCENARIOS = frozenset(
    {
        "hot-event",
        "ga-rush",
        "spread",
        "confirm-flow",
        "onsale",
        "stadium",
        "waiting-room",
        "login-rush",
    }
)


@dataclass(frozen=True)
class Sizes:
    """How big and how long: every scenario is bounded by these."""

    read_seconds: float  # wrk duration of each GET scenario
    read_warmup_seconds: float
    read_connections: int
    read_event_seats: int  # the seat map read by read-cached / read-uncached
    hot_seats: int
    hot_clients: int
    ga_capacity: int
    ga_clients: int
    spread_events: int
    spread_seats: int  # per event; the request pool is this many seats, never reused
    spread_seconds: float
    spread_connections: int
    confirm_events: int
    confirm_seats: int
    confirm_seconds: float
    confirm_connections: int
    users: int  # customers seeded (each hot-event / ga-rush client is its own user)
    client_timeout_s: float  # per request, for every load generator
    # onsale and stadium: people who log in, read the map, hold, confirm or abandon
    onsale_seats: int
    buyers: int  # each is its own user (<= users)
    subscribers: int  # WebSocket clients of the event's live channel
    arrival_s: float  # buyers arrive spread over this long after the sale opens
    sale_deadline_s: float  # a sale not over by then is cut short (and says so)
    stadium_sections: int
    stadium_rows: int  # per section, of SEATS_PER_ROW seats (seed.py)
    reference_seats: int  # the small event stadium's hold figures are compared with
    paced_holds: int  # holds at a steady pace on each event: the per-hold cost
    flash_holds: int  # 1-seat holds sent at once on each event
    # login-rush: real logins (bcrypt at the production cost) while others read and hold
    login_users: int
    login_seconds: float  # the logins are spread over this long
    login_holders: int  # users already logged in who hold seats meanwhile
    login_event_seats: int


FULL = Sizes(
    read_seconds=10,
    read_warmup_seconds=2,
    read_connections=64,
    read_event_seats=500,
    hot_seats=500,
    hot_clients=1000,
    ga_capacity=1000,
    ga_clients=2000,
    spread_events=50,
    spread_seats=1200,
    spread_seconds=10,
    spread_connections=64,
    confirm_events=20,
    confirm_seats=1000,
    confirm_seconds=10,
    confirm_connections=64,
    users=2000,
    client_timeout_s=30,
    onsale_seats=200,
    buyers=1000,
    subscribers=200,
    arrival_s=2.0,
    sale_deadline_s=60,
    stadium_sections=20,
    stadium_rows=50,
    reference_seats=500,
    paced_holds=300,
    flash_holds=500,
    login_users=1000,
    login_seconds=5.0,
    login_holders=50,
    login_event_seats=1000,
)

QUICK = Sizes(
    read_seconds=1.5,
    read_warmup_seconds=0.5,
    read_connections=16,
    read_event_seats=500,
    hot_seats=50,
    hot_clients=100,
    ga_capacity=100,
    ga_clients=200,
    spread_events=5,
    spread_seats=200,
    spread_seconds=1.5,
    spread_connections=16,
    confirm_events=3,
    confirm_seats=200,
    confirm_seconds=1.5,
    confirm_connections=16,
    users=200,
    client_timeout_s=30,
    onsale_seats=50,
    buyers=100,
    subscribers=20,
    arrival_s=0.5,
    sale_deadline_s=20,
    stadium_sections=2,
    stadium_rows=10,
    reference_seats=100,
    paced_holds=30,
    flash_holds=50,
    login_users=10,  # each is about 0.3 s of bcrypt, on cores the map readers keep busy
    login_seconds=1.0,
    login_holders=5,
    login_event_seats=200,
)


@dataclass(frozen=True)
class Options:
    quick: bool
    only: tuple[str, ...]
    workers: int
    port: int | None
    pool_size: int
    max_overflow: int
    wrk_threads: int
    generator: str  # "auto" | "wrk" | "python"
    profile: bool
    results_dir: Path
    strict: bool
    install_tools: bool
    database: str
    redis_db: int
    app: str

    @property
    def sizes(self) -> Sizes:
        return QUICK if self.quick else FULL


def _scenarios(text: str) -> tuple[str, ...]:
    asked = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in SCENARIOS]
    if unknown or not asked:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from "
            + ", ".join(SCENARIOS)
        )
    return tuple(s for s in SCENARIOS if s in asked)  # always in the canonical order


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description="Production-like load benchmark of the Evently API (127.0.0.1 only).",
        epilog="Scenarios: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny durations and counts (the smoke test)"
    )
    parser.add_argument(
        "--only",
        type=_scenarios,
        default=SCENARIOS,
        metavar="SCENARIO[,..]",
        help="run only these scenarios",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes (default 2)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="API port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--pool-size", type=int, default=20, help="DB_POOL_SIZE per worker (default 20)"
    )
    parser.add_argument(
        "--max-overflow", type=int, default=0, help="DB_MAX_OVERFLOW per worker (default 0)"
    )
    parser.add_argument(
        "--wrk-threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="wrk threads (default: 2, or 1 on a single core)",
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator for the GET, spread and confirm-flow scenarios: wrk when "
        "installed (auto), or the built-in asyncio one",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the API workers with py-spy during each scenario (pip install py-spy)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where results are written"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 3 when a performance target is not met"
    )
    parser.add_argument(
        "--install-tools",
        action="store_true",
        help="apt-get install wrk when it is missing (needs root or sudo)",
    )
    parser.add_argument(
        "--database",
        default="evently_bench",
        help="database to (re)create on the DATABASE_URL server (default evently_bench; "
        "the name must start with that)",
    )
    parser.add_argument(
        "--redis-db", type=int, default=14, help="Redis database to flush and use (default 14)"
    )
    parser.add_argument(
        "--app",
        default="app.main:app",
        help="the ASGI application uvicorn serves (default app.main:app; another module "
        "that imports it and changes one thing makes an A/B experiment)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.pool_size < 1 or args.max_overflow < 0 or args.wrk_threads < 1:
        parser.error("--workers, --pool-size and --wrk-threads must be >= 1, --max-overflow >= 0")
    return Options(
        quick=args.quick,
        only=args.only,
        workers=args.workers,
        port=args.port,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        wrk_threads=args.wrk_threads,
        generator=args.generator,
        profile=args.profile,
        results_dir=args.results_dir,
        strict=args.strict,
        install_tools=args.install_tools,
        database=args.database,
        redis_db=args.redis_db,
        app=args.app,
    )
