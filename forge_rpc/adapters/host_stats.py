"""Host and process figures for the metrics snapshot and GetSystemStats, read from /proc (Linux) without a
dependency. Each read is a few small procfs files (microseconds), so it runs on the event loop.

CPU percentages are deltas between two calls: the first call answers 0.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HostProbe", "HostSample", "ProcessSample"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class HostSample:
    cpu_percent: float
    memory_percent: float
    memory_used_mb: float
    memory_total_mb: float
    disk_usage_percent: float
    load_average: tuple[float, float, float]
    cpu_count: int


@dataclass(frozen=True, slots=True)
class ProcessSample:
    pid: int
    rss_mb: float
    cpu_percent: float
    threads: int
    open_fds: int


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    line = _read(_PROC / "stat").split("\n", 1)[0].split()
    if len(line) < 5 or line[0] != "cpu":
        return 0.0, 0.0
    values = [float(v) for v in line[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values)
    return total - idle, total


def _memory() -> tuple[float, float]:
    """(used MB, total MB) from MemTotal and MemAvailable."""
    fields: dict[str, float] = {}
    for line in _read(_PROC / "meminfo").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            fields[name] = float(parts[0]) / 1024  # kB → MB
    total = fields.get("MemTotal", 0.0)
    return total - fields.get("MemAvailable", total), total


class HostProbe:
    def __init__(self, disk_path: Path | str = "/") -> None:
        self._disk = str(disk_path)
        self._last_cpu = _cpu_times()
        self._last_proc = (time.process_time(), time.monotonic())
        self.hostname = socket.gethostname()
        self.platform = platform.platform()
        self.python_version = sys.version.split()[0]

    def host(self) -> HostSample:
        busy, total = _cpu_times()
        d_busy, d_total = busy - self._last_cpu[0], total - self._last_cpu[1]
        self._last_cpu = (busy, total)
        used, mem_total = _memory()
        try:
            st = os.statvfs(self._disk if os.path.exists(self._disk) else "/")
            disk = 100.0 * (1 - st.f_bavail / st.f_blocks) if st.f_blocks else 0.0
        except OSError:
            disk = 0.0
        try:
            load = os.getloadavg()
        except OSError:
            load = (0.0, 0.0, 0.0)
        return HostSample(
            cpu_percent=100.0 * d_busy / d_total if d_total > 0 else 0.0,
            memory_percent=100.0 * used / mem_total if mem_total else 0.0,
            memory_used_mb=used,
            memory_total_mb=mem_total,
            disk_usage_percent=disk,
            load_average=(load[0], load[1], load[2]),
            cpu_count=os.cpu_count() or 1,
        )

    def process(self) -> ProcessSample:
        cpu, at = time.process_time(), time.monotonic()
        d_cpu, d_at = cpu - self._last_proc[0], at - self._last_proc[1]
        self._last_proc = (cpu, at)
        rss = threads = 0
        for line in _read(_PROC / "self" / "status").splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        try:
            fds = len(os.listdir(_PROC / "self" / "fd"))
        except OSError:
            fds = 0
        return ProcessSample(
            pid=os.getpid(),
            rss_mb=rss / 1024,
            cpu_percent=100.0 * d_cpu / d_at if d_at > 0 else 0.0,
            threads=threads,
            open_fds=fds,
        )
