"""The "same library" reference: a step's matrix products, timed alone through NumPy's BLAS.

A step of an L-layer net multiplies, per layer l with H (B, n_in), W (n_in, n_out), dZ (B, n_out):

- forward        H @ W       (B, n_in) x (n_in, n_out)
- weight grad    H^T @ dZ    (n_in, B) x (B, n_out)
- input grad     dZ @ W^T    (B, n_out) x (n_out, n_in), for every layer but the first

:func:`blas_floor` times each of those with ``np.dot`` on contiguous operands of the net's dtype
(:func:`bpbench.bench.engine.time_call`) and sums the medians: an implementation whose products
are separate BLAS calls can only add time to that. It is not a floor of every step: a fused
update, hand loops that skip zero rows, or another library's GEMM can beat it. The true floor
of a point, the roofline, is :mod:`bpbench.bench.roofline`.
"""

from __future__ import annotations

import numpy as np

from . import engine


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


def gemm_times(net, batch_size, seed=0, settings="floor"):
    """``[(label, Timing), ...]``: np.dot on contiguous random operands of each product's shape."""
    rng = np.random.default_rng(seed)
    out = []
    for label, a_shape, b_shape in gemm_shapes(net, batch_size):
        a = rng.standard_normal(a_shape).astype(net.dtype)
        b = rng.standard_normal(b_shape).astype(net.dtype)
        c = np.empty((a_shape[0], b_shape[1]), dtype=net.dtype)
        out.append((label, engine.time_call(lambda a=a, b=b, c=c: np.dot(a, b, out=c),
                                            settings=settings)))
    return out


def blas_floor(net, batch_size, settings="floor"):
    """Seconds: the sum of the median np.dot times of the step's products (:func:`gemm_shapes`).

    Operands are contiguous arrays of ``net.dtype``; the results go into preallocated arrays, so
    no allocation is timed. ``settings``: the engine's (a preset name or Settings).
    """
    return sum(t.median for _, t in gemm_times(net, batch_size, settings=settings))
