"""Small generated datasets for training checks and demos, seeded and deterministic.

Every generator draws from ``numpy.random.default_rng(seed)`` only, returns float64 inputs
(implementations convert to their dtype) and targets in the form the matching loss expects:
integer class indices (B,) for ``cross_entropy``, floats (B, K) for ``mse``.
"""

from __future__ import annotations

import numpy as np

from .checks import check_positive_int


def _check_common(n, noise, seed, noise_name="noise"):
    n = check_positive_int(n, "n")
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool)
            and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"{noise_name} must be a non-negative finite number, got {noise!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return n, float(noise), np.random.default_rng(seed)


def two_spirals(n=1000, noise=0.0, seed=0, turns=1.5, radius=3.0):
    """Two interleaved spirals: a classic classification task no linear model can solve.

    Returns ``X`` (n, 2) float64 with coordinates in [-radius, radius] and ``y`` (n,) int64 in
    {0, 1}; the classes alternate (row i has class i % 2), so any prefix is balanced. Class 1
    is class 0 rotated by 180 degrees. ``noise``: standard deviation of Gaussian jitter added to
    the coordinates; ``turns``: how many times each arm winds around the centre. The default
    radius 3 gives coordinates of standard deviation about 1.5: inside [-1, 1] a tanh network
    learns the spirals several times more slowly.
    """
    n, noise, rng = _check_common(n, noise, seed)
    if not (isinstance(radius, (int, float)) and np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    y = np.arange(n, dtype=np.int64) % 2
    # radius grows with the angle; sqrt spreads the points evenly along the arm
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * turns * 2 * np.pi
    r = radius * t / (turns * 2 * np.pi)
    sign = np.where(y == 0, 1.0, -1.0)
    X = np.column_stack([sign * r * np.cos(t), sign * r * np.sin(t)])
    X += noise * rng.standard_normal(X.shape)
    return X, y


def sine_regression(n=1000, noise=0.0, seed=0):
    """One period of a sine: ``y = sin(x)`` for x uniform in [-pi, pi].

    Returns ``X`` (n, 1) float64 scaled to [-1, 1] (x / pi) and ``Y`` (n, 1) float64 in
    [-1, 1] plus Gaussian noise of standard deviation ``noise``. A target for the ``mse`` loss.
    """
    n, noise, rng = _check_common(n, noise, seed)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    Y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return x / np.pi, Y


def blobs(n=300, classes=3, dim=2, spread=0.3, seed=0):
    """Gaussian blobs, one per class, centres evenly spaced on the unit circle (first two axes).

    Returns ``X`` (n, dim) float64 and ``y`` (n,) int64 in [0, classes); row i has class
    i % classes. ``spread``: standard deviation of each blob; with the default 0.3 and three
    classes the blobs barely overlap, so a small network separates them almost perfectly.
    """
    classes = check_positive_int(classes, "classes")
    dim = check_positive_int(dim, "dim")
    n, spread, rng = _check_common(n, spread, seed, "spread")
    y = np.arange(n, dtype=np.int64) % classes
    angle = 2 * np.pi * np.arange(classes) / classes
    centres = np.zeros((classes, dim))
    centres[:, 0] = np.cos(angle)
    if dim > 1:
        centres[:, 1] = np.sin(angle)
    X = centres[y] + spread * rng.standard_normal((n, dim))
    return X, y
