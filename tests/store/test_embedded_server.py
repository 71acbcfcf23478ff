"""The embedded server's lifecycle against real PostgreSQL processes: cold and warm starts, restarts that keep
data, the root path, a second owner, and the debris of killed runs (orphaned server, stale pid files)."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from forge_rpc.server.database import EmbeddedPostgres, EmbeddedPostgresError

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="inspects processes through /proc")


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir shared by this module's tests (initdb once); each test leaves its server stopped."""
    return tmp_path_factory.mktemp("lifecycle")


async def _execute(url: str, query: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(query.encode())


async def _fetch_one(url: str, query: str) -> tuple[object, ...]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(query.encode())).fetchone()
        assert row is not None
        return row


def _is_running(pid: int) -> bool:
    """Alive and not a zombie (this sandbox's init does not reap, so dead servers linger as zombies)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except FileNotFoundError:
        return False


async def _wait_until_gone(pid: int) -> None:
    for _ in range(100):
        if not _is_running(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} is still running")


# A forge stand-in in its own process: starts the server, reports it, then waits to be killed.
_OWNER = """
import asyncio, sys
from pathlib import Path
from forge_rpc.server.database import EmbeddedPostgres

async def main() -> None:
    server = EmbeddedPostgres(Path(sys.argv[1]))
    url = await server.start()
    print(server.postmaster_pid, url, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@dataclass
class Owner:
    process: asyncio.subprocess.Process
    postmaster_pid: int
    url: str

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()


@pytest_asyncio.fixture
async def owner(cluster_dir: Path) -> AsyncIterator[Owner]:
    """The server started by another process, to be killed -9 by the test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OWNER, str(cluster_dir), stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        pid, url = line.decode().split()
        yield Owner(proc, int(pid), url)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cold_start_warm_restart_keeps_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "forge")
    began = time.perf_counter()
    url = await server.start()
    cold = time.perf_counter() - began
    try:
        assert url.startswith("postgresql://postgres@/forge?host=")  # the unix socket
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE kept (v text)")
            await conn.execute("INSERT INTO kept VALUES ('survives a restart')")
        began = time.perf_counter()
        await server.stop()
        stopped = time.perf_counter() - began
        assert server.postmaster_pid is None

        began = time.perf_counter()
        url = await server.start()
        warm = time.perf_counter() - began
        assert await _fetch_one(url, "SELECT v FROM kept") == ("survives a restart",)
        # The handed-out database comes with pgvector.
        assert await _fetch_one(url, "SELECT '[1,2]'::vector <=> '[2,4]'::vector") == (0.0,)
    finally:
        await server.stop()
    print(f"\nembedded postgres: cold start {cold:.2f}s, stop {stopped:.2f}s, warm start {warm:.2f}s")
    assert warm < 5


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path needs root")
async def test_as_root_the_server_runs_as_an_unprivileged_user(cluster_dir: Path) -> None:
    server = EmbeddedPostgres(cluster_dir)
    await server.start()
    try:
        pid = server.postmaster_pid
        assert pid is not None
        proc, pgdata = await asyncio.to_thread(lambda: (Path(f"/proc/{pid}").stat(), server.pgdata.stat()))
        assert proc.st_uid == pwd.getpwnam("forge-pg").pw_uid != 0
        assert pgdata.st_uid == proc.st_uid
        assert (pgdata.st_mode & 0o777) == 0o700
        status = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        assert groups.split()[1:] == []  # root's supplementary groups were dropped too
        # Its own session: a terminal's Ctrl-C reaches forge, which stops the server after flushing.
        assert os.getsid(pid) != os.getsid(0)
    finally:
        await server.stop()


async def test_fixed_port_tcp_needs_the_password(cluster_dir: Path) -> None:
    port = await asyncio.to_thread(_free_port)
    server = EmbeddedPostgres(cluster_dir, port=port)
    await server.start()
    try:
        assert f"@127.0.0.1:{port}/forge" in server.tcp_url
        assert await _fetch_one(server.tcp_url, "SELECT inet_server_port()") == (port,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            await psycopg.AsyncConnection.connect(f"postgresql://postgres:wrong@127.0.0.1:{port}/forge")
        # A second owner of the same data dir is refused while the first runs.
        with pytest.raises(EmbeddedPostgresError, match="in use by another forge process"):
            await EmbeddedPostgres(cluster_dir).start()
    finally:
        await server.stop()


async def test_a_taken_fixed_port_fails_with_the_server_log(cluster_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedPostgres(cluster_dir, port=taken.getsockname()[1])
        with pytest.raises(EmbeddedPostgresError, match="Address already in use"):
            await server.start()
    # The failed start released the data dir.
    await server.start()
    await server.stop()


async def test_server_orphaned_by_a_killed_forge_is_replaced(cluster_dir: Path, owner: Owner) -> None:
    orphan = owner.postmaster_pid
    await _execute(owner.url, "DROP TABLE IF EXISTS crash; CREATE TABLE crash (v int); INSERT INTO crash VALUES (1)")
    await owner.kill()  # forge dies, its flock with it; the server it started keeps running
    assert _is_running(orphan)

    server = EmbeddedPostgres(cluster_dir)
    url = await server.start()
    try:
        assert server.postmaster_pid != orphan
        assert not _is_running(orphan)
        assert await _fetch_one(url, "SELECT count(*) FROM crash") == (1,)
    finally:
        await server.stop()


async def test_starts_after_the_server_was_killed(cluster_dir: Path, owner: Owner) -> None:
    postmaster = owner.postmaster_pid
    await _execute(owner.url, "DROP TABLE IF EXISTS crash; CREATE TABLE crash (v int); INSERT INTO crash VALUES (2)")
    await owner.kill()
    os.kill(postmaster, signal.SIGKILL)
    await _wait_until_gone(postmaster)
    assert (cluster_dir / "pg" / "postmaster.pid").exists()  # stale, naming a dead (or zombie) process

    server = EmbeddedPostgres(cluster_dir)
    began = time.perf_counter()
    url = await server.start()
    print(f"\nstart after kill -9 (crash recovery): {time.perf_counter() - began:.2f}s")
    try:
        assert await _fetch_one(url, "SELECT v FROM crash") == (2,)  # committed, so recovered from the WAL
    finally:
        await server.stop()


async def test_pid_file_naming_a_live_unrelated_process_does_not_block(cluster_dir: Path) -> None:
    # After a crash in a container the old pid is often reused; PostgreSQL alone would refuse to start.
    stranger = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        server = EmbeddedPostgres(cluster_dir)
        await server.start()
        await server.stop()
        (server.pgdata / "postmaster.pid").write_text(f"{stranger.pid}\n{server.pgdata}\n")
        await server.start()
        try:
            assert server.postmaster_pid not in (None, stranger.pid)
        finally:
            await server.stop()
    finally:
        stranger.kill()
        await stranger.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
