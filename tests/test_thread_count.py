"""The decode loop's thread count on a real machine: fewer threads while other programs keep the
CPU busy, every thread again once it is idle."""

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.thread_count import WINDOW_S, ThreadCount, cpu_quota, usable_cores


@pytest.mark.serial
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


def test_a_cpu_quota_caps_the_cores_counted(tmp_path: Path) -> None:
    """cgroup v2 (one hierarchy) and v1 (the cpu controller's mount), a parent's limit applying to
    its children, and a container's view: its own cgroup mounted at the root."""
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "web.service").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "system.slice" / "cpu.max").write_text("150000 100000\n")
    (v2 / "system.slice" / "web.service" / "cpu.max").write_text("max 100000\n")
    proc = tmp_path / "cgroup-v2"
    proc.write_text("0::/system.slice/web.service\n")
    assert cpu_quota(v2, proc) == 1.5
    assert usable_cores(v2, proc) == 1  # 1.5 CPUs of time: one thread, never throttled

    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)  # the container's own cgroup is the mount
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup-v1"
    proc.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cpu_quota(v1, proc) == 3.0
    assert usable_cores(v1, proc) == min(3, len(os.sched_getaffinity(0)))

    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(v1, proc) is None
    assert usable_cores(v1, proc) == len(os.sched_getaffinity(0))
    assert cpu_quota(v1, tmp_path / "no-such-file") is None


def test_a_process_in_a_real_cgroup_with_one_cpu_of_quota_counts_one_core() -> None:
    """Linux's own cgroup files (v1 cpu controller, as on this project's machines): a process
    placed in a cgroup allowed one CPU's worth of time counts one core on a machine with more."""
    controller = Path("/sys/fs/cgroup/cpu")
    if not os.access(controller / "cgroup.procs", os.W_OK):
        pytest.skip("needs a writable cgroup v1 cpu controller (root)")
    cores = len(os.sched_getaffinity(0))
    assert cores >= 2, "the check needs a machine with two cores or more"
    group = controller / f"answerdesk-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        code = "from engine.thread_count import usable_cores; print(usable_cores())"
        inside = subprocess.run(
            [
                "sh",
                "-c",
                f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"',
                sys.executable,
                code,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        outside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert (int(inside.stdout), int(outside.stdout)) == (1, cores)
    finally:
        group.rmdir()
