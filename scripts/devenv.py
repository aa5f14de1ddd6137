"""Find or start the PostgreSQL and Redis a developer machine needs.

For each service, independently:

1. ``DATABASE_URL`` / ``REDIS_URL`` from the environment (or a ``.env`` file in the current
   folder), used as given;
2. otherwise the local server on its default port (PostgreSQL on 127.0.0.1:5432 as user
   ``postgres`` or the current OS user, Redis on 127.0.0.1:6379) when it answers;
3. otherwise an embedded server started from pip packages, with its data under ``.data/``
   (as root, PostgreSQL's programs and data go to ``/var/tmp/evently-<hash>/`` instead:
   it runs as an unprivileged account, which may not be allowed into the checkout).

``EVENTLY_FORCE_EMBEDDED=1`` skips step 2 (to try the embedded servers on a machine that
has local ones). The database is created when it does not exist yet.

Command line::

    python -m scripts.devenv exec -- CMD ARGS...   # run CMD with DATABASE_URL and REDIS_URL set
    python -m scripts.devenv env                   # print `export` lines (no embedded servers)
    python -m scripts.devenv stop                  # stop embedded servers left running
    python -m scripts.devenv clean                 # stop them and delete their data
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import getpass
import os
import shlex
import signal
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # it ships no type hints
import redis
from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url

from scripts import embedded
from scripts.embedded import LOCALHOST, DevEnvError, port_answers
from scripts.processes import raise_interrupt, run_child, signals

__all__ = [
    "DATA_DIR",
    "DevEnvError",
    "Services",
    "child_env",
    "ensure_services",
    "run_with_services",
    "setting",
]

T = TypeVar("T")
DATA_DIR = Path(".data")
POSTGRES_SCHEMES = ("postgres", "postgresql")


@dataclass
class Services:
    """Where PostgreSQL and Redis are, and how to stop what this process started."""

    database_url: str  # SQLAlchemy async URL: postgresql+asyncpg://user@host:port/dbname
    redis_url: str  # redis://host:port/0
    started: list[str] = field(default_factory=list)  # e.g. ["embedded PostgreSQL 18 on :54329"]
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop only what this process started, newest first; safe to call twice."""
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # one failure must not leave the other server running
                print(f"devenv: error while stopping a service: {exc}", file=sys.stderr)
        atexit.unregister(self.stop)


def ensure_services(data_dir: Path = DATA_DIR, database: str = "evently") -> Services:
    """Find or start PostgreSQL and Redis, make sure `database` exists, say what is used."""
    services = Services(database_url="", redis_url="")
    try:
        services.database_url = _postgres(data_dir, database, services)
        services.redis_url = _redis(data_dir, services)
    except BaseException:
        services.stop()  # do not leave a half-started environment behind (Ctrl-C included)
        raise
    if services.started:
        atexit.register(services.stop)  # a safety net for library callers that forget
    return services


# -- resolution -------------------------------------------------------------------------


def setting(name: str) -> str | None:
    """A variable from the environment, else from ./.env (pydantic-settings reads it too)."""
    value = os.environ.get(name)
    if not value and Path(".env").is_file():
        value = dotenv_values(".env").get(name)
    return value or None


def _force_embedded() -> bool:
    return (setting("EVENTLY_FORCE_EMBEDDED") or "").lower() in ("1", "true", "yes")


def _say(service: str, what: str) -> None:
    # stderr, so that `eval "$(python -m scripts.devenv env)"` only sees the exports.
    print(f"{service}: {what}", file=sys.stderr)


def _shown(path: Path) -> str:
    """A path relative to the current folder when it is inside it, for shorter messages."""
    resolved = path.resolve()
    return (
        str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else str(path)
    )


def _postgres(data_dir: Path, database: str, services: Services | None) -> str:
    """The database URL to use; starts an embedded server only when `services` is given."""
    configured = setting("DATABASE_URL")
    if configured:
        url = normalise_database_url(configured)
        advice = "check DATABASE_URL, or unset it to use a local or embedded server"
        try:
            _run(_ensure_database(url, advice))
        except _LoginRefused as exc:
            raise DevEnvError(f"{exc}; {advice}") from exc
        _say("PostgreSQL", f"DATABASE_URL ({url.render_as_string(hide_password=True)})")
        return url.render_as_string(hide_password=False)
    local = None if _force_embedded() else _local_postgres(database)
    if local is not None:
        _say(
            "PostgreSQL",
            f"local server at {LOCALHOST}:5432 (user {local.username}, database {database})",
        )
        return local.render_as_string(hide_password=False)
    if services is None:
        raise _needs_embedded("PostgreSQL", "5432")
    return _embedded_postgres(data_dir, database, services)


def _embedded_postgres(data_dir: Path, database: str, services: Services) -> str:
    with embedded.data_lock(data_dir):
        server = _track(services, embedded.start_postgres(data_dir))
    url = _database_url("postgres", server.port, database)
    _run(_ensure_database(url, "see the server log in the data folder"))
    _describe("PostgreSQL", server)
    return url.render_as_string(hide_password=False)


def _redis(data_dir: Path, services: Services | None) -> str:
    """The Redis URL to use; starts an embedded server only when `services` is given."""
    configured = setting("REDIS_URL")
    if configured:
        _ping(configured, "check REDIS_URL, or unset it to use a local or embedded server")
        _say("Redis", f"REDIS_URL ({make_url(configured).render_as_string(hide_password=True)})")
        return configured
    local = f"redis://{LOCALHOST}:6379/0"
    if not _force_embedded() and port_answers(LOCALHOST, 6379):
        _ping(local, "set REDIS_URL=redis://:PASSWORD@127.0.0.1:6379/0")
        _say("Redis", f"local server at {LOCALHOST}:6379")
        return local
    if services is None:
        raise _needs_embedded("Redis", "6379")
    with embedded.data_lock(data_dir):
        server = _track(services, embedded.start_redis(data_dir))
    _describe("Redis", server)
    return f"redis://{LOCALHOST}:{server.port}/0"


def _track(services: Services, server: embedded.Embedded) -> embedded.Embedded:
    """Make `services` responsible for stopping the server when this session started it."""
    if server.stop is not None:
        services._stops.append(server.stop)
        services.started.append(f"{server.label} on :{server.port}")
    return server


def _describe(name: str, server: embedded.Embedded) -> None:
    verb = "using" if server.note else "started"
    where = f"data in {_shown(server.data)}" + (f"; {server.note}" if server.note else "")
    _say(name, f"{verb} {server.label} on {LOCALHOST}:{server.port} ({where})")


def _needs_embedded(name: str, port: str) -> DevEnvError:
    variable = "DATABASE_URL" if name == "PostgreSQL" else "REDIS_URL"
    return DevEnvError(
        f"nothing answers on {LOCALHOST}:{port} and `env` cannot keep an embedded {name} "
        f"running after it exits: set {variable}, or run your command with "
        "`python -m scripts.devenv exec -- CMD` (what `make run` and `make test` do)"
    )


# -- PostgreSQL -------------------------------------------------------------------------


def normalise_database_url(raw: str) -> URL:
    """Parse a PostgreSQL URL in any common spelling into the asyncpg dialect SQLAlchemy uses."""
    try:
        url = make_url(raw)
    except Exception as exc:
        raise DevEnvError(f"DATABASE_URL is not a URL ({exc}): {raw!r}") from exc
    if url.drivername.split("+")[0] not in POSTGRES_SCHEMES:
        raise DevEnvError(
            f"DATABASE_URL must point at PostgreSQL (postgresql://...), not {url.drivername}://"
        )
    return url.set(drivername="postgresql+asyncpg")


def _database_url(user: str, port: int, database: str) -> URL:
    return URL.create(
        "postgresql+asyncpg", username=user, host=LOCALHOST, port=port, database=database
    )


def _local_postgres(database: str) -> URL | None:
    """The local server on 5432 as `postgres`, else as the OS user; None when nothing listens."""
    if not port_answers(LOCALHOST, 5432):
        return None
    refusals: list[str] = []
    for user in _candidate_users():
        url = _database_url(user, 5432, database)
        try:
            _run(_ensure_database(url, "set DATABASE_URL to one you can use"))
        except _LoginRefused as exc:
            refusals.append(str(exc))
            continue
        return url
    raise DevEnvError(
        f"PostgreSQL at {LOCALHOST}:5432 refused us ({'; '.join(refusals)}). Set "
        f"DATABASE_URL=postgresql://USER:PASSWORD@127.0.0.1:5432/{database}, or stop that "
        "server, or set EVENTLY_FORCE_EMBEDDED=1 to use an embedded one on another port"
    )


def _candidate_users() -> list[str]:
    try:
        me = getpass.getuser()
    except (KeyError, OSError):  # a uid without a name, as in some containers
        return ["postgres"]
    return list(dict.fromkeys(["postgres", me]))


class _LoginRefused(DevEnvError):
    """The server answered but did not let this user in."""


async def _connect(url: URL) -> asyncpg.Connection:
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except asyncpg.PostgresError as exc:
        if str(exc.sqlstate).startswith("28"):  # class 28: invalid authorization
            raise _LoginRefused(f"user {url.username} was refused: {exc}") from exc
        raise


async def _ensure_database(url: URL, advice: str) -> None:
    """Connect to url's database, creating it first when it does not exist."""
    try:
        connection = await _connect(url)
    except asyncpg.InvalidCatalogNameError:
        await _create_database(url, advice)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        shown = url.render_as_string(hide_password=True)
        raise DevEnvError(f"cannot connect to {shown}: {exc}; {advice}") from exc
    else:
        await connection.close()


async def _create_database(url: URL, advice: str) -> None:
    name = url.database or "evently"
    try:
        connection = await _connect(url.set(database="postgres"))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DevEnvError(
            f"database {name!r} does not exist and connecting to the maintenance database "
            f"`postgres` to create it failed: {exc}; create it yourself or {advice}"
        ) from exc
    try:
        await connection.execute(f"CREATE DATABASE {_quoted(name)}")
    except asyncpg.DuplicateDatabaseError:
        pass  # another session created it in the meantime
    except asyncpg.PostgresError as exc:
        user = url.username
        raise DevEnvError(f"user {user} cannot create database {name!r}: {exc}; {advice}") from exc
    finally:
        await connection.close()


def _quoted(identifier: str) -> str:
    """An SQL identifier in double quotes, so any database name is taken literally."""
    return '"' + identifier.replace('"', '""') + '"'


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when the caller is itself inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# -- Redis ------------------------------------------------------------------------------


def _ping(url: str, advice: str) -> None:
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise DevEnvError(f"Redis at {shown} does not answer PING ({exc}); {advice}") from exc


# -- running commands -------------------------------------------------------------------


def child_env(services: Services, **extra: str) -> dict[str, str]:
    """This process's environment plus the service URLs, with our venv's programs first."""
    env = dict(os.environ, DATABASE_URL=services.database_url, REDIS_URL=services.redis_url)
    # `python -m scripts.run` from .venv/bin: uvicorn, alembic, celery live next to python.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run_with_services(work: Callable[[Services], int], data_dir: Path, database: str) -> int:
    """Ensure services, run `work`, and stop what was started however it ends (Ctrl-C too)."""
    services: Services | None = None
    try:
        # SIGTERM and SIGHUP unwind like Ctrl-C, so the finally below still stops the servers.
        with signals(raise_interrupt, signal.SIGTERM, signal.SIGHUP):
            services = ensure_services(data_dir, database)
            return work(services)
    except KeyboardInterrupt:
        return 130
    except (DevEnvError, OSError) as exc:  # OSError: a folder or program we could not use
        print(f"devenv: {exc}", file=sys.stderr)
        return 1
    finally:
        if services is not None:
            # A second, impatient Ctrl-C must not cut the shutdown of the servers short.
            with signals(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                services.stop()


# -- command line -----------------------------------------------------------------------


def _exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(
            "devenv: nothing to run; usage: python -m scripts.devenv exec -- CMD", file=sys.stderr
        )
        return 2
    return run_with_services(
        lambda s: run_child(command, child_env(s)), args.data_dir, args.database
    )


def _env(args: argparse.Namespace) -> int:
    try:
        database_url = _postgres(args.data_dir, args.database, None)
        redis_url = _redis(args.data_dir, None)
    except DevEnvError as exc:
        print(f"devenv: {exc}", file=sys.stderr)
        return 1
    print(f"export DATABASE_URL={shlex.quote(database_url)}")
    print(f"export REDIS_URL={shlex.quote(redis_url)}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    if args.data_dir.is_dir():
        with embedded.data_lock(args.data_dir):
            _stop_servers(args.data_dir)
    else:
        print("nothing was running")
    return 0


def _clean(args: argparse.Namespace) -> int:
    if args.data_dir.is_dir():
        # Under the lock, so that no session starts a server on the data being deleted.
        with embedded.data_lock(args.data_dir):
            _stop_servers(args.data_dir)
            removed = embedded.remove_data(args.data_dir)
    else:
        removed = embedded.remove_data(args.data_dir)  # root's PostgreSQL folder may remain
    print(f"removed {', '.join(map(str, removed))}" if removed else "no data to remove")
    return 0


def _stop_servers(data_dir: Path) -> None:
    stops = (("PostgreSQL", embedded.stop_postgres), ("Redis", embedded.stop_redis))
    stopped = [name for name, stop in stops if stop(data_dir)]
    print(f"stopped embedded {' and '.join(stopped)}" if stopped else "nothing was running")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=DATA_DIR, help="embedded servers' data")
    common.add_argument("--database", default="evently", help="database to use (and create)")
    parser = argparse.ArgumentParser(
        prog="python -m scripts.devenv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("exec", parents=[common], help="run CMD with the services")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(handler=_exec)
    env_help = "print export lines; only for servers that outlive us (never embedded ones)"
    env = commands.add_parser("env", parents=[common], help=env_help)
    env.set_defaults(handler=_env)
    stop = commands.add_parser("stop", parents=[common], help="stop embedded servers left running")
    stop.set_defaults(handler=_stop)
    clean_help = "stop embedded servers and delete their data"
    clean = commands.add_parser("clean", parents=[common], help=clean_help)
    clean.set_defaults(handler=_clean)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (DevEnvError, OSError) as exc:  # exec has already reported its own
        print(f"devenv: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
