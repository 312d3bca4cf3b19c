"""The decode loop's thread count on a real machine: fewer threads while other programs keep the
CPU busy, every thread again once it is idle."""

import hashlib
import os
import subprocess
import sys
import threading
import time

from engine.thread_count import WINDOW_S, ThreadCount


def test_a_busy_machine_takes_threads_from_the_model_and_an_idle_one_gives_them_back() -> None:
    chooser = ThreadCount(2)
    seen: list[int] = []
    stop = threading.Event()

    def decode_thread() -> None:  # computes all the time, at the decode loop's priority
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        while not stop.is_set():
            seen.append(chooser.choose())
            hashlib.sha256(bytes(1 << 20)).digest()  # without the GIL, as torch computes

    worker = threading.Thread(target=decode_thread, daemon=True)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        worker.start()
        assert _settles(chooser, 1), "every core busy, yet the model kept all its threads"
        for hog in hogs:
            hog.kill()
        assert _settles(chooser, 2), "the machine is idle again, yet the model kept one thread"
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        stop.set()
        worker.join()
    assert set(seen) == {1, 2}


def test_one_core_allowed_is_one_thread_always() -> None:
    chooser = ThreadCount(1)
    assert [chooser.choose() for _ in range(3)] == [1, 1, 1]


def _settles(chooser: ThreadCount, threads: int) -> bool:
    deadline = time.monotonic() + 10 * WINDOW_S
    while chooser.threads != threads and time.monotonic() < deadline:
        time.sleep(0.1)
    return chooser.threads == threads
