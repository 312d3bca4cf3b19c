import os
import threading

from engine import as_batch_job


def policy_of_new_thread() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
    thread.start()
    thread.join()
    return seen[0]


def test_a_batch_job_and_its_threads_run_at_the_lowest_priority_then_it_is_restored() -> None:
    before = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    with as_batch_job():
        assert os.sched_getscheduler(0) == os.SCHED_IDLE
        assert policy_of_new_thread() == os.SCHED_IDLE  # as torch's worker threads start
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before
    assert policy_of_new_thread() == before[0]
