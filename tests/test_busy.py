"""busy_threads counts the threads that really work, from the kernel's per-thread CPU times."""

import threading
import time

import pytest

from bpbench.bench.busy import busy_threads


def spin(seconds):
    end = time.thread_time() + seconds  # this thread's own CPU time: load elsewhere is no matter
    while time.thread_time() < end:
        pass


def test_one_busy_thread_is_the_main_one_and_a_worker_that_spins_too_is_counted():
    if busy_threads(lambda: None, 1) is None:
        pytest.skip("no /proc/self/task here")
    idle = threading.Event()
    sleeper = threading.Thread(target=idle.wait)  # alive but idle: not counted
    sleeper.start()
    try:
        alone = busy_threads(lambda: spin(0.05), repeats=3)
    finally:
        idle.set()
        sleeper.join()
    assert len(alone) == 1 and alone[0][1].endswith("(main)") and alone[0][0] >= 0.1

    # a worker alive before and after the calls (a pool's thread): threads that end within
    # the calls are gone from /proc by the time it is read, and not counted
    go, done, release = threading.Event(), threading.Event(), threading.Event()

    def work():
        go.wait()
        spin(0.15)
        done.set()
        release.wait()  # alive until the CPU times have been read

    worker = threading.Thread(target=work, name="worker")
    worker.start()

    def with_worker():
        go.set()
        spin(0.15)
        done.wait()

    try:
        both = busy_threads(with_worker, repeats=1)
    finally:
        release.set()
        worker.join()
    # each spinner used >= 0.15 s of CPU: far above the 10% threshold whatever the load
    assert len(both) == 2 and all(s >= 0.1 for s, _ in both), both
