"""What one SGD step cannot beat: its matrix products, timed alone (the "BLAS floor").

A step of an L-layer net multiplies, per layer l with H (B, n_in), W (n_in, n_out), dZ (B, n_out):

- forward        H @ W       (B, n_in) x (n_in, n_out)
- weight grad    H^T @ dZ    (n_in, B) x (B, n_out)
- input grad     dZ @ W^T    (B, n_out) x (n_out, n_in), for every layer but the first

:func:`blas_floor` times each of those with ``np.dot`` on contiguous operands of the net's dtype
and sums the medians: an implementation whose products are BLAS calls can only add time to that.
:func:`physical_limit` divides the step's FLOP count by the rate np.dot reaches on a large square
product, the most this machine's BLAS gets out of the cores.
"""

from __future__ import annotations

import numpy as np

from .timing import time_call

_rates = {}


def gemm_shapes(net, batch_size):
    """The step's products: ``[(label, (m, k), (k, n)), ...]``, forward, weight and input grads.

    Labels read ``"fwd[l]"``, ``"dW[l]"``, ``"dX[l]"``; the first layer has no ``dX`` (the
    input needs no gradient).
    """
    B = int(batch_size)
    shapes = []
    for layer, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        shapes.append((f"fwd[{layer}]", (B, n_in), (n_in, n_out)))
        shapes.append((f"dW[{layer}]", (n_in, B), (B, n_out)))
        if layer > 0:
            shapes.append((f"dX[{layer}]", (B, n_out), (n_out, n_in)))
    return shapes


def gemm_times(net, batch_size, seed=0, **timing_kwargs):
    """``[(label, Timing), ...]``: np.dot on contiguous random operands of each product's shape."""
    rng = np.random.default_rng(seed)
    out = []
    for label, a_shape, b_shape in gemm_shapes(net, batch_size):
        a = rng.standard_normal(a_shape).astype(net.dtype)
        b = rng.standard_normal(b_shape).astype(net.dtype)
        c = np.empty((a_shape[0], b_shape[1]), dtype=net.dtype)
        out.append((label, time_call(lambda a=a, b=b, c=c: np.dot(a, b, out=c), **timing_kwargs)))
    return out


def blas_floor(net, batch_size, **timing_kwargs):
    """Seconds: the sum of the median np.dot times of the step's products (:func:`gemm_shapes`).

    Operands are contiguous arrays of ``net.dtype``; the results go into preallocated arrays, so
    no allocation is timed. Keyword arguments go to :func:`bpbench.bench.timing.time_call`.
    """
    return sum(t.median for _, t in gemm_times(net, batch_size, **timing_kwargs))


def gemm_rate(dtype="float32", n=2048):
    """FLOP/s of np.dot on two n x n matrices of ``dtype`` (measured once per process)."""
    key = (np.dtype(dtype).name, int(n))
    if key not in _rates:
        a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
        c = np.empty_like(a)
        t = time_call(lambda: np.dot(a, a, out=c), warmup=1, min_repeats=5, min_time=0.5)
        _rates[key] = 2.0 * n ** 3 / t.median
    return _rates[key]


def physical_limit(net, batch_size):
    """Seconds one step would take if all its FLOP ran at :func:`gemm_rate` (``net.step_flops``)."""
    return net.step_flops(batch_size) / gemm_rate(net.dtype.name)
