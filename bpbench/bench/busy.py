"""Which threads of this process do the work of a call: the check behind "same thread count".

A thread count set somewhere (``torch.set_num_threads``, Numba's pool, XLA's pool) is a
promise; the kernel's per-thread CPU times are what happened. :func:`busy_threads` runs a
call repeatedly and reports the threads that did a real share of the work, read from
``/proc/self/task/*/stat`` (Linux; elsewhere it returns None).
"""

from __future__ import annotations

import os

#: a thread counts as busy when it used at least this fraction of the busiest thread's CPU time
BUSY_FRACTION = 0.1


def _thread_ticks():
    """{thread id: (name, user + system clock ticks)} of this process's threads, or None."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    out = {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))  # utime, stime (fields 14, 15)
    return out


def busy_threads(fn, repeats=20):
    """CPU seconds of each thread busy during ``repeats`` calls of ``fn``, busiest first.

    A list of ``(seconds, thread name)``, keeping threads with at least
    :data:`BUSY_FRACTION` of the busiest one's time; None where ``/proc`` is not available.
    The main thread's name ends in " (main)". The length of the list is the number of threads
    that really worked; a framework that computes on worker threads (JAX) also shows the main
    thread's dispatch work, which alternates with the workers'. Threads that end before the
    calls do are not seen (thread pools live on). Other threads of the process (a background
    compile, say) count too: call it on a quiet process.
    """
    before = _thread_ticks()
    if before is None:
        return None
    for _ in range(repeats):
        fn()
    after = _thread_ticks()
    tick = os.sysconf("SC_CLK_TCK")
    main = str(os.getpid())  # the main thread's id is the process id
    used = {tid: (name + " (main)" if tid == main else name, ticks - before.get(tid, (name, 0))[1])
            for tid, (name, ticks) in after.items()}
    top = max((ticks for _, ticks in used.values()), default=0)
    return sorted(((ticks / tick, name) for name, ticks in used.values()
                   if top and ticks >= BUSY_FRACTION * top), reverse=True)
