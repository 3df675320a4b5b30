"""The epoch loop: shuffle, mini-batches, SGD steps, stopping criteria."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .checks import check_batch, check_lr, check_positive_int, check_seed
from .interface import Implementation


def _optional_real(value, name):
    """None, or value as a finite float (bools and non-numbers refused)."""
    if value is None:
        return None
    try:
        ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(
            value)
    except OverflowError:  # an int beyond float64's range
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    return float(value)


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss; also a ValueError (usually the lr is too large)."""


class History(list):
    """Per-epoch losses (a plain list of floats) with why training stopped.

    ``stop_reason``: ``"epochs"`` (ran them all), ``"target"`` (loss <= target_loss) or
    ``"patience"`` (no improvement larger than tol for ``patience`` epochs).
    """

    stop_reason: str = "epochs"


def train(model, X, y, lr=0.1, epochs=100, batch_size=32, seed=0, *, target_loss=None,
          tol=None, patience=5, progress=False, callback=None):
    """Train ``model`` in place with mini-batch SGD; returns the per-epoch loss history.

    Each epoch draws a permutation of the N rows from ``numpy.random.default_rng(seed)`` (one
    generator for the whole run, so the order is identical for every implementation), cuts it
    into consecutive batches of ``batch_size`` (the last may be shorter) and takes one
    ``step`` per batch. The epoch's loss is the sample-weighted mean of the batch losses, each
    measured before its update.

    Stops after ``epochs`` epochs, or earlier when the epoch loss is <= ``target_loss``, or when
    it has not improved on the best so far by more than ``tol`` for ``patience`` epochs in a
    row (only when ``tol`` is given). Raises DivergenceError when a loss is not finite.

    ``progress``: show a tqdm progress bar with the current loss. ``callback(epoch, loss)`` is
    called after each epoch; returning True stops training.
    """
    if not isinstance(model, Implementation):
        raise ValueError("model must be a bpbench implementation instance, "
                         f"got {type(model).__name__}")
    X, y = check_batch(model.net, X, y)
    lr = check_lr(lr)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    patience = check_positive_int(patience, "patience")
    seed = check_seed(seed)
    target_loss = _optional_real(target_loss, "target_loss")
    tol = _optional_real(tol, "tol")
    if tol is not None and tol < 0:
        raise ValueError(f"tol must be a non-negative number or None, got {tol!r}")
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {callback!r}")

    n = X.shape[0]
    sizes = np.diff(np.append(np.arange(0, n, batch_size), n)).astype(np.float64)
    rng = np.random.default_rng(seed)
    history = History()
    best, stale = math.inf, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, desc=f"train {model.name}", unit="epoch", leave=True)
    try:
        for epoch in range(epochs):
            order = rng.permutation(n)
            batch_losses = model.run_epoch(X, y, order, batch_size, lr)
            loss = float(np.dot(batch_losses, sizes) / n)
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}: loss is {loss} "
                    f"(after {len(history)} finite epochs); try a smaller lr than {lr}")
            history.append(loss)
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4g}")
                bar.update(1)
            if callback is not None and callback(epoch, loss):
                history.stop_reason = "callback"
                break
            if target_loss is not None and loss <= target_loss:
                history.stop_reason = "target"
                break
            if tol is not None:
                if loss < best - tol:
                    best, stale = loss, 0
                else:
                    stale += 1
                    if stale >= patience:
                        history.stop_reason = "patience"
                        break
    finally:
        if bar is not None:
            bar.close()
    return history
