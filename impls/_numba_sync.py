"""Atomics and a phase scheduler for the Numba kernels: one parallel region per step.

A step is a fixed sequence of *phases* (a layer's forward products, its backward products, ...);
each phase is cut into *chunks* whose number and bounds depend only on the shapes, never on the
thread count. Every thread runs the whole sequence: in each phase it claims chunks with an atomic
compare-and-swap (its own share first, then any chunk nobody has taken), runs what it claimed,
counts it done, and waits until the phase's done count is complete before the next phase.

Why this shape:

- **one region per step**: entering a Numba ``prange`` region costs 1.5-2 us on the project's
  2-core machine (measured in ``docs/numba.md``); a depth-8 step has ~20 phases,
  so a region per phase would cost more than the whole step at batch 1.
- **fixed shares**: thread ``t`` of ``T`` claims chunks ``[t*n//T, (t+1)*n//T)`` first, so with
  fixed chunk bounds each thread works on the same rows of every weight matrix step after step and
  finds them in its own core's cache.
- **no deadlock, whatever the scheduling**: a thread waits only for chunks another thread has
  *claimed* (so that thread is running them). If the threading layer runs the loop's iterations
  one after the other (a team of one, ``OMP_DYNAMIC``, nesting), the first claims every chunk of
  every phase and the others find all phases complete. A descheduled thread's unclaimed chunks
  are taken by the running one, so a loaded machine slows the step down, never stops it.
- **results independent of the thread count**: a chunk computes the same numbers whichever thread
  runs it, and reductions over chunks run in chunk order.

``sync`` is an int64 array of ``n_phases * SLOTS`` counters, zeroed before each step: for
phase ``k``, ``sync[k*SLOTS]`` counts finished chunks and ``sync[k*SLOTS + 1 + c]`` is chunk
``c``'s claim.
The atomics are LLVM ``cmpxchg``/``atomicrmw``/``load atomic`` (sequentially consistent, acquire),
so the chunk results written before a done count are visible to the thread that reads it.
"""

from __future__ import annotations

import ctypes
import platform

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: counters per phase: the done count, then one claim flag per chunk (so at most SLOTS - 1 chunks)
SLOTS = 128
MAX_CHUNKS = SLOTS - 1

#: busy-wait iterations (each with a CPU pause) before a waiting thread starts yielding its core
SPINS_BEFORE_YIELD = 4000

_libc = ctypes.CDLL(None)
llvm.add_symbol("bpbench_sched_yield", ctypes.cast(_libc.sched_yield, ctypes.c_void_p).value)
_sched_yield = types.ExternalFunction("bpbench_sched_yield", types.int32())

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _slot(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.gep(ary.data, [idx])


@intrinsic
def atomic_add(typingctx, arr, idx, value):
    """arr[idx] += value atomically (int64 array); returns the old value."""
    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return types.int64(arr, types.intp, types.int64), codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """If arr[idx] == expected, set it to new, atomically; returns the old value."""
    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)
    return types.int64(arr, types.intp, types.int64, types.int64), codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """arr[idx] read with acquire ordering (never cached in a register across a spin loop)."""
    def codegen(context, builder, sig, args):
        ptr = _slot(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, types.intp), codegen


@intrinsic
def cpu_relax(typingctx):
    """The x86 ``pause`` hint inside a spin loop (nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def num_threads(typingctx):
    """Numba's current thread count (numba.set_num_threads) from compiled code, by the symbol
    the threading layer registers with LLVM when it starts (what prange itself calls).

    ``numba.get_num_threads()`` inside a function makes it uncacheable (it holds a ctypes
    pointer), and from Python it costs ~1 us a call. The threading layer must have started
    (any call of ``numba.get_num_threads()`` from Python starts it).
    """
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(cgutils.intp_t, [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads")
        return builder.call(fn, [])
    return types.intp(), codegen


_sync = njit(nogil=True)


@_sync
def claim(sync, phase, n_chunks, first, cursor):
    """The next chunk this thread gets in ``phase``: (chunk, next cursor), chunk -1 when none.

    Chunks are tried from ``first`` (this thread's own share) onwards, cyclically; ``cursor`` is
    how many have been tried (start at 0).
    """
    base = phase * SLOTS
    while cursor < n_chunks:
        c = first + cursor
        if c >= n_chunks:
            c -= n_chunks
        cursor += 1
        if atomic_cas(sync, base + 1 + c, 0, 1) == 0:
            return c, cursor
    return -1, cursor


@_sync
def done(sync, phase):
    """Count one chunk of ``phase`` finished (its results are written before this)."""
    atomic_add(sync, phase * SLOTS, 1)


@_sync
def wait(sync, phase, n_chunks):
    """Return once all ``n_chunks`` chunks of ``phase`` are done: spin, then yield the core."""
    spins = 0
    while atomic_load(sync, phase * SLOTS) < n_chunks:
        if spins < SPINS_BEFORE_YIELD:
            spins += 1
            cpu_relax()
        else:
            _sched_yield()


@_sync
def first_chunk(t, T, n_chunks):
    """The first chunk of thread t's own share of n_chunks chunks (fixed for fixed t, T)."""
    return (t * n_chunks) // T
