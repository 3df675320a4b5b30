"""``naive``: backpropagation in plain Python, one scalar at a time.

The slow baseline, written to be read top to bottom, and a second derivation of the gradients
made without :mod:`bpbench.reference`: its own activations, derivatives and losses, on lists of
lists of Python floats.

Layout: a batch is a list of B rows, each a list of floats; ``W[i][j]`` connects input unit i to
output unit j (shape (n_in, n_out), as in the contract); ``b[j]`` is output unit j's bias.

Precision: Python floats are float64. For a float32 network the arithmetic still runs in float64
and every result that leaves or persists is rounded to float32: the outputs, the gradients and
the parameters after each update. The rounding of parameters after each step keeps the model's
state a float32 model; its answers are then the float64 answers for float32 inputs, rounded,
which agrees with the float64 reference well inside the float32 bound (1e-4 relative).
"""

from __future__ import annotations

import math

import numpy as np

from bpbench import codes
from bpbench.interface import Implementation

# ---------------------------------------------------------------- activations f(z) and f'(z)
# Derivatives here are written in terms of the pre-activation z (the reference writes them in
# terms of the output a = f(z)), so the two derivations check each other.

def relu(z):
    return 0.0 if z <= 0.0 else z  # written so that a NaN passes through, as in NumPy


def relu_prime(z):
    return 1.0 if z > 0.0 else 0.0  # relu'(0) = 0, as the contract says


def sigmoid(z):
    # two branches so that exp never sees a large positive argument (no OverflowError)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_prime(z):
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh_prime(z):
    t = math.tanh(z)
    return 1.0 - t * t


ACTIVATION = {"relu": relu, "tanh": math.tanh, "sigmoid": sigmoid}
DERIVATIVE = {"relu": relu_prime, "tanh": tanh_prime, "sigmoid": sigmoid_prime}


# ---------------------------------------------------------------- losses: value and dL/d(out)

def mse(out, Y):
    """Mean over all B*K elements of (out - Y)**2, and its gradient 2 (out - Y) / (B*K)."""
    n = len(out) * len(out[0])
    loss = 0.0
    grad = []
    for o_row, y_row in zip(out, Y, strict=True):
        g_row = []
        for o, t in zip(o_row, y_row, strict=True):
            loss += (o - t) * (o - t)  # not ** 2: that raises OverflowError past 1e154
            g_row.append(2.0 * (o - t) / n)
        grad.append(g_row)
    return loss / n, grad


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label], and its gradient (p - onehot) / B.

    log-sum-exp with the row's own maximum subtracted: every exp argument is <= 0, so logits of
    1e4 neither overflow nor lose the answer.
    """
    B = len(logits)
    loss = 0.0
    grad = []
    for row, label in zip(logits, labels, strict=True):
        m = max(row)
        log_z = m + math.log(sum(math.exp(z - m) for z in row))
        loss += log_z - row[label]
        p = [math.exp(z - log_z) for z in row]
        p[label] -= 1.0
        grad.append([g / B for g in p])
    return loss / B, grad


LOSS = {"mse": mse, "cross_entropy": softmax_cross_entropy}


# ---------------------------------------------------------------- the implementation

class NaiveImplementation(Implementation):
    name = "naive"
    description = "pure Python loops over scalars (lists of floats): the readable baseline"

    # ------------------------------------------------ parameters in and out
    def _load_params(self, params):
        codes.require(self.name, self.net, ACTIVATION, LOSS)
        self.W = [W.tolist() for W, _ in params]
        self.b = [b.tolist() for _, b in params]

    def _get_params(self):
        return [(self._array(W), self._array(b)) for W, b in zip(self.W, self.b, strict=True)]

    def _array(self, values):
        """Python floats -> array of net.dtype (this is where float32 results are rounded)."""
        return np.array(values, dtype=self.net.dtype)

    def _rounded(self, values):
        """values rounded to net.dtype and back to Python floats (a no-op for float64)."""
        if self.net.dtype == np.float64:
            return values
        return self._array(values).tolist()

    def _to_device(self, X, y):
        return X.tolist(), y.tolist()

    # ------------------------------------------------ forward
    def _layers(self, X):
        """Forward pass keeping what backprop needs: (inputs h, pre-activations z) per layer.

        Returns (hs, zs, out): hs[l] is the B x n_in input of layer l, zs[l] its B x n_out
        pre-activation; out = zs[-1] (the output layer has no activation).
        """
        hs, zs = [], []
        h = X
        last = len(self.W) - 1
        for layer, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            n_in, n_out = len(W), len(b)
            z = []
            for row in h:
                z.append([b[j] + sum(row[i] * W[i][j] for i in range(n_in))
                          for j in range(n_out)])
            hs.append(h)
            zs.append(z)
            if layer < last:
                f = ACTIVATION[self.net.activations[layer]]
                h = [[f(v) for v in z_row] for z_row in z]
        return hs, zs, zs[-1]

    def _forward(self, X):
        _, _, out = self._layers(X.tolist())
        return self._array(out)

    # ------------------------------------------------ backward
    def _backprop(self, data):
        """(loss, [(dW, db), ...]) as Python floats, float64 arithmetic."""
        X, y = data
        hs, zs, out = self._layers(X)
        loss, delta = LOSS[self.net.loss](out, y)  # delta = dL/dz of the output layer
        grads = [None] * len(self.W)
        for layer in range(len(self.W) - 1, -1, -1):
            h, W = hs[layer], self.W[layer]
            n_in, n_out = len(W), len(self.b[layer])
            dW = [[sum(h[s][i] * delta[s][j] for s in range(len(h))) for j in range(n_out)]
                  for i in range(n_in)]
            db = [sum(d_row[j] for d_row in delta) for j in range(n_out)]
            grads[layer] = (dW, db)
            if layer > 0:
                # dL/dh_i = sum_j delta_j W[i][j]; then through the activation that made h
                fp = DERIVATIVE[self.net.activations[layer - 1]]
                z_below = zs[layer - 1]
                delta = [[sum(d_row[j] * W[i][j] for j in range(n_out)) * fp(z_row[i])
                          for i in range(n_in)]
                         for d_row, z_row in zip(delta, z_below, strict=True)]
        return loss, grads

    def _loss_and_grads(self, data):
        loss, grads = self._backprop(data)
        return loss, [(self._array(dW), self._array(db)) for dW, db in grads]

    def _step(self, data, lr):
        loss, grads = self._backprop(data)
        for layer, (dW, db) in enumerate(grads):
            W, b = self.W[layer], self.b[layer]
            new_W = [[w - lr * g for w, g in zip(w_row, g_row, strict=True)]
                     for w_row, g_row in zip(W, dW, strict=True)]
            new_b = [v - lr * g for v, g in zip(b, db, strict=True)]
            self.W[layer] = self._rounded(new_W)
            self.b[layer] = self._rounded(new_b)
        return loss
