"""How many CPU threads the decode loop computes on: every core the rest of the machine leaves free.

On an idle machine, every core makes the model faster (bundled model, bf16, 2-core AMD EPYC: a
128-token reply takes 2.74 s on two threads, 4.17 s on one). When other work wants the CPU (the
server's own FAQ answers under load, or a neighbour), the decode threads, at the lowest
priority, give way to it, and one preempted thread stalls the whole team: an OpenMP team's
threads wait for each other at the end of every operation. Then fewer threads are faster.
Measured with 50 simulated customers asking 100 questions a second (2-core AMD EPYC, two 120-s
runs each): on two threads the model streamed 2,266 and 1,981 text chunks and FAQ answers took
450 and 148 ms at p95; on one, 3,139 and 3,041 chunks, 113 and 130 ms.

Step times are too noisy under load to compare thread counts by (one step took 30 ms, the next
300), so the loop asks Linux instead, once per `WINDOW_S`: when the decode thread spent more than
`CROWDED` of that time ready to run but waiting for a CPU, it drops a thread; when the machine
had at least half a core idle, it adds one back. Elsewhere (no /proc) it keeps every thread.

The most it uses are the cores the process may use (`usable_cores`): a container limited to two
CPUs on a 16-core host still counts 16 in `os.cpu_count()`, and a team of 16 threads sharing the
time of two stalls at every barrier.
"""

import math
import os
import time
from pathlib import Path

WINDOW_S = 1.0
CROWDED = 0.2  # share of the window the decode thread waited for a CPU
IDLE_CORES = 0.5  # idle CPU over the window that makes room for one more thread
_SCHEDSTAT = Path("/proc/thread-self/schedstat")  # ns on CPU, ns waiting for a CPU, slices
_STAT = Path("/proc/stat")  # first line: the machine's CPU time by kind, in clock ticks
CGROUPS = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")  # this process's cgroup per hierarchy: id:controllers:path


class ThreadCount:
    """Chooses the thread count; call `choose` from the thread that computes (the decode thread)."""

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.threads = self.most
        self._measurable = _SCHEDSTAT.is_file() and _STAT.is_file()
        self._ticks = os.sysconf("SC_CLK_TCK") if self._measurable else 100
        self._since: float | None = None  # the window's start; its counters:
        self._waited_ns = self._idle = 0

    def choose(self) -> int:
        """The thread count for the next step or prompt."""
        if self.most == 1 or not self._measurable:
            return self.threads
        now = time.monotonic()
        if self._since is None:  # the first call, on the thread whose waits count
            self._since, (self._waited_ns, self._idle) = now, self._read()
        if now - self._since < WINDOW_S:
            return self.threads
        waited_ns, idle = self._read()
        seconds = now - self._since
        crowded = (waited_ns - self._waited_ns) / 1e9 / seconds > CROWDED
        idle_cores = (idle - self._idle) / self._ticks / seconds
        self._since, self._waited_ns, self._idle = now, waited_ns, idle
        if crowded and self.threads > 1:
            self.threads -= 1
        elif not crowded and idle_cores >= IDLE_CORES and self.threads < self.most:
            self.threads += 1
        return self.threads

    @staticmethod
    def _read() -> tuple[int, int]:
        """(ns this thread has waited for a CPU, the machine's idle ticks), both since boot."""
        waited_ns = int(_SCHEDSTAT.read_text().split()[1])
        fields = _STAT.read_text().split("\n", 1)[0].split()
        return waited_ns, int(fields[4]) + int(fields[5])  # idle + iowait


def usable_cores(cgroups: Path = CGROUPS, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The cores this process may compute on: the CPUs it may run on (its affinity), fewer where
    its cgroup's CPU quota allows less time (`docker run --cpus`, Kubernetes CPU limits), rounded
    down: a team of threads that outnumbers its CPU time is throttled in the middle of its work."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroups, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def cpu_quota(cgroups: Path = CGROUPS, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time this process's cgroup and its parents allow (the smallest), or None
    when none is set or cgroups are not there. cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max
    PERIOD") and v1 (`cpu.cfs_quota_us`, -1 for none, over `cpu.cfs_period_us`)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy, mounted at the root
            folders = [cgroups]
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own mount
            folders = list(dict.fromkeys([cgroups / controllers, cgroups / "cpu"]))
        else:
            continue
        for mount in folders:
            # Inside a container the mount is the container's own cgroup and `path` names it as
            # the host sees it: every folder from `path` up to the mount that exists counts.
            folder = mount / path.lstrip("/")
            while True:
                quota = _quota_of(folder)
                if quota is not None:
                    quotas.append(quota)
                if folder == mount:
                    break
                folder = folder.parent
    return min(quotas, default=None)


def _quota_of(folder: Path) -> float | None:
    try:
        if (folder / "cpu.max").is_file():
            quota, period = (folder / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        if (folder / "cpu.cfs_quota_us").is_file():
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota_us < 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None
