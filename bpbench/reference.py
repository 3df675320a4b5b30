"""The math, defined once: activations, losses, their derivatives, and the reference backprop.

Every implementation in ``impls/`` is a specialised copy of what is written here, and the tests
prove that they agree with it; this module itself is checked against central finite differences
(:func:`bpbench.agreement.finite_difference_check`).

Shapes: ``B`` samples in a batch, ``K`` output units. Activations are elementwise. Derivatives
are written in terms of the activation's *output* ``a = f(z)`` (as scikit-learn does), so the
backward pass needs no copy of the pre-activations ``z``:

- relu:    a = max(z, 0),        f'(z) = 1 if a > 0 else 0   (so relu'(0) = 0, as the contract says)
- tanh:    a = tanh(z),          f'(z) = 1 - a**2
- sigmoid: a = 1 / (1 + e**-z),  f'(z) = a * (1 - a)
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax, softmax


def relu(z):
    """max(z, 0) elementwise."""
    return np.maximum(z, 0)


def relu_derivative(a):
    """relu'(z) from a = relu(z): 1 where a > 0, else 0 (relu'(0) = 0)."""
    return (a > 0).astype(a.dtype)


def tanh_derivative(a):
    """tanh'(z) = 1 - tanh(z)**2, from a = tanh(z)."""
    return 1 - a * a


def sigmoid_derivative(a):
    """sigmoid'(z) = s (1 - s), from a = s = sigmoid(z)."""
    return a * (1 - a)


#: name -> f(z), elementwise
ACTIVATIONS = {"relu": relu, "tanh": np.tanh, "sigmoid": expit}

#: name -> f'(z) as a function of a = f(z), elementwise
ACTIVATION_DERIVATIVES = {
    "relu": relu_derivative,
    "tanh": tanh_derivative,
    "sigmoid": sigmoid_derivative,
}


def mse_loss(out, Y):
    """Mean over all B*K elements of (out - Y)**2 (PyTorch ``MSELoss()``). out, Y: (B, K)."""
    diff = out - Y
    return float(np.mean(diff * diff))


def mse_gradient(out, Y):
    """dL/d(out) of :func:`mse_loss`: 2 (out - Y) / (B*K), shape (B, K).

    The mean runs over all B*K elements, so every element's share carries 1/(B*K); a gradient
    of (out - Y) / B would be K times the gradient of the loss we report.
    """
    return 2 * (out - Y) / out.size


def cross_entropy_loss(logits, y):
    """Mean over the batch of -log softmax(logits)[y] (PyTorch ``CrossEntropyLoss()``).

    logits: (B, K) float; y: (B,) integer class indices in [0, K). Computed with log-sum-exp
    (scipy's log_softmax subtracts the row max), so logits of 1e4 give a finite loss.
    """
    logp = log_softmax(logits, axis=1)
    return float(-np.mean(logp[np.arange(len(y)), y]))


def cross_entropy_gradient(logits, y):
    """dL/d(logits) of :func:`cross_entropy_loss`: (softmax(logits) - onehot(y)) / B, (B, K).

    The softmax and the log cancel in the chain rule, which is why the delta at the output is
    simply probabilities minus targets; softmax is taken of shifted logits, so it never overflows.
    """
    delta = softmax(logits, axis=1)
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    return delta


#: name -> loss(out, target) -> float
LOSSES = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}

#: name -> dL/d(out)(out, target) -> (B, K) array
LOSS_GRADIENTS = {"mse": mse_gradient, "cross_entropy": cross_entropy_gradient}


def forward(net, params, X):
    """Every layer's output: ``[X, a_1, ..., a_depth, out]``; out is affine (logits for CE).

    X: (B, sizes[0]); a_l: (B, sizes[l]); out: (B, sizes[-1]).
    """
    activations = [X]
    h = X
    n_layers = len(params)
    for layer, (W, b) in enumerate(params):
        z = h @ W + b
        h = ACTIVATIONS[net.activations[layer]](z) if layer < n_layers - 1 else z
        activations.append(h)
    return activations


def _as_float64(net, params, X, y):
    """params, X and (mse) targets in float64; float32 values are exact in float64."""
    params = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]
    X = np.asarray(X, np.float64)
    if net.loss == "mse":
        y = np.asarray(y, np.float64).reshape(len(X), -1)
    return params, X, y


def loss(net, params, X, y):
    """The loss alone, in float64 (what finite differences differentiate)."""
    params, X, y = _as_float64(net, params, X, y)
    return LOSSES[net.loss](forward(net, params, X)[-1], y)


def loss_and_grads(net, params, X, y):
    """The reference backprop: loss and ``[(dW, db), ...]`` shaped like params.

    Runs in float64 whatever the inputs' dtype (float32 values are exact in float64), so the
    float32 implementations are compared against the exact answer for their rounded inputs.
    """
    params, X, y = _as_float64(net, params, X, y)
    acts = forward(net, params, X)
    out = acts[-1]
    value = LOSSES[net.loss](out, y)
    delta = LOSS_GRADIENTS[net.loss](out, y)  # dL/dz of the output layer
    grads = [None] * len(params)
    for layer in range(len(params) - 1, -1, -1):
        W, _ = params[layer]
        grads[layer] = (acts[layer].T @ delta, delta.sum(axis=0))
        if layer > 0:
            # chain rule through the affine map, then through the activation of the layer below
            delta = (delta @ W.T) * ACTIVATION_DERIVATIVES[net.activations[layer - 1]](acts[layer])
    return value, grads


def sgd_step(net, params, X, y, lr):
    """One SGD step in float64: returns (loss before the update, updated params)."""
    value, grads = loss_and_grads(net, params, X, y)
    new = [(np.asarray(W, np.float64) - lr * dW, np.asarray(b, np.float64) - lr * db)
           for (W, b), (dW, db) in zip(params, grads, strict=True)]
    return value, new
