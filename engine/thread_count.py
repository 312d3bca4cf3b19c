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
"""

import os
import time
from pathlib import Path

WINDOW_S = 1.0
CROWDED = 0.2  # share of the window the decode thread waited for a CPU
IDLE_CORES = 0.5  # idle CPU over the window that makes room for one more thread
_SCHEDSTAT = Path("/proc/thread-self/schedstat")  # ns on CPU, ns waiting for a CPU, slices
_STAT = Path("/proc/stat")  # first line: the machine's CPU time by kind, in clock ticks


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
