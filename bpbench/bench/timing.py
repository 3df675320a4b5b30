"""Timing done once, for every caller (``compare``, ``fastest``, the scripts in ``benchmarks/``).

Everything that can make a timing lie is handled here and named:

- **validation and transfers**: the batch is prepared (validated, copied to the device) once,
  outside the clock, and ``step_prepared`` is timed;
- **JIT compilation / warm-up**: ``warmup`` untimed calls run first (the first compiles);
- **asynchronous devices**: ``model.synchronize()`` runs before the clock starts and before it
  stops, so queued GPU work is inside the measurement;
- **noise**: many repeats, reported as median and interquartile range, never the mean or the min.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: learning rate used when timing steps: small, so thousands of repeated steps neither
#: diverge nor drive activations into denormals, which would change the speed being measured
TIMING_LR = 1e-4


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``n`` timed repeats."""

    median: float
    q25: float
    q75: float
    n: int

    @property
    def spread(self):
        """(q75 - q25) / median: the relative interquartile range; > 0.2 reads as noisy."""
        return (self.q75 - self.q25) / self.median if self.median > 0 else 0.0

    @classmethod
    def from_samples(cls, samples):
        s = np.asarray(samples, dtype=np.float64)
        q25, med, q75 = np.percentile(s, [25, 50, 75])
        return cls(float(med), float(q25), float(q75), int(s.size))


def time_call(fn, *, sync=None, warmup=2, min_time=0.2, min_repeats=5, max_repeats=10_000,
              max_time=5.0):
    """Time ``fn()`` repeatedly; returns a :class:`Timing` of seconds per call.

    Calls are timed in groups (``number`` calls per sample, chosen so a sample lasts >= ~1 ms,
    far above the clock's resolution) until ``min_time`` seconds have been measured and at least
    ``min_repeats`` samples taken, or ``max_time`` has passed. ``sync()``, when given, runs before
    each sample's clock starts and before it stops (device work finishes inside the measurement).
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    # calibrate: how many calls make a sample of about a millisecond
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-9)
    number = max(1, min(1000, int(1e-3 / one)))
    samples = []
    spent = 0.0
    deadline = time.perf_counter() + max_time
    while len(samples) < max_repeats:
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        dt = time.perf_counter() - t0
        samples.append(dt / number)
        spent += dt
        if len(samples) >= min_repeats and (spent >= min_time or time.perf_counter() > deadline):
            break
    return Timing.from_samples(samples)


def time_step(model, X, y, lr=TIMING_LR, **kwargs):
    """Timing of one SGD ``step`` of ``model`` on (X, y), validation and transfers excluded.

    ``model`` is an implementation instance or anything with ``prepare``, ``step_prepared``
    and ``synchronize`` (the PyTorch peer in :mod:`bpbench.bench.peers`). The first warm-up call
    triggers JIT compilation. Keyword arguments go to :func:`time_call`.
    """
    batch = model.prepare(X, y)
    return time_call(lambda: model.step_prepared(batch, lr), sync=model.synchronize, **kwargs)


def time_first_call(make_model, X, y, lr=TIMING_LR):
    """Seconds of the first ``step`` of a fresh model: JIT compilation (or cache load) + one step.

    Meaningful only in a fresh process for JIT implementations (later models reuse compiled
    code); :mod:`bpbench.bench.compile_cost` runs it in a subprocess for that reason.
    """
    t0 = time.perf_counter()
    model = make_model()
    model.step(X, y, lr)
    model.synchronize()
    return time.perf_counter() - t0
