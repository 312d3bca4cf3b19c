"""CPU priority: customers' FAQ answers first; generation and batch jobs share what is left.

A reply being generated takes seconds, while a customer whose question the FAQ answers exactly
should have the answer in milliseconds; so the decode thread runs at Linux's lowest priority,
SCHED_IDLE: it computes only when no other thread of the machine wants the CPU. A batch job run
next to a live server (`kb tune`, `kb import`, `train`) runs at that priority too, sharing the
leftovers with generation; at normal priority it would take them all (measured on 2 cores, a
question for the model every 4 s during `kb tune`: at normal priority three of five replies ran
out their 30-s deadline and the customer got the closest FAQ entry, one took 15 s; with `kb tune`
at SCHED_IDLE every reply came from the model in 0.45-0.92 s).
"""

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

NICE_INSTEAD = 10  # added to the thread's nice value where SCHED_IDLE is not allowed


def yield_cpu() -> None:
    """Give the calling thread the lowest CPU priority, SCHED_IDLE (threads started from it
    inherit it): it runs only when no other thread of the machine wants the CPU, and a thread
    that wakes takes the CPU from it at once. (Nice +10, the fallback, only shrinks its share: a
    waking thread may wait out part of its time slice.) Measured with 50 simulated customers at
    100 questions a second for 5 minutes (`make bench-load`), three runs within 20 minutes: FAQ
    answers p50/p95 50/378 and 44/190 ms at nice +10, 35/114 ms at SCHED_IDLE, while the model
    streamed as much (3,112 and 3,647 chunks vs 3,682). Linux only: elsewhere `setpriority`
    would lower the whole process."""
    if not sys.platform.startswith("linux"):
        return
    me = threading.get_native_id()
    try:
        os.sched_setscheduler(me, os.SCHED_IDLE, os.sched_param(0))
        return
    except OSError as exc:  # e.g. a seccomp profile that forbids it
        log.info("SCHED_IDLE not allowed (%s); running at nice +%d instead", exc, NICE_INSTEAD)
    try:
        os.setpriority(
            os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + NICE_INSTEAD)
        )
    except OSError as exc:  # run at normal priority
        log.warning("Could not lower the thread's CPU priority: %s", exc)


@contextmanager
def as_batch_job() -> Iterator[None]:
    """Run the block at the lowest CPU priority (`yield_cpu`), with every thread it starts, then
    return to the priority before it. For long computations an operator runs on a machine that
    also answers customers."""
    if not sys.platform.startswith("linux"):
        yield
        return
    me = threading.get_native_id()
    policy, nice = os.sched_getscheduler(me), os.getpriority(os.PRIO_PROCESS, me)
    yield_cpu()
    try:
        yield
    finally:
        try:
            os.sched_setscheduler(me, policy, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, me, nice)
        except OSError as exc:  # an unprivileged thread may not raise its priority again
            log.info("The thread stays at the lowest CPU priority: %s", exc)
