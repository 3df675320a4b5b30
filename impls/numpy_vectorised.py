"""``numpy``: vectorised NumPy backprop with buffers preallocated per batch size.

The same math as :mod:`bpbench.reference`, written for speed: every activation, delta and
gradient lives in a buffer allocated once per batch size and reused, the products write into
those buffers (``np.dot(..., out=...)``), and elementwise work happens in place. The only Python
loop is over layers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from bpbench import codes
from bpbench.interface import Implementation


def _relu(a):
    np.maximum(a, 0, out=a)


def _tanh(a):
    np.tanh(a, out=a)


def _sigmoid(a):
    expit(a, out=a)


def _times_relu_derivative(delta, a):
    np.multiply(delta, a > 0, out=delta)  # relu'(0) = 0


def _times_tanh_derivative(delta, a):
    delta *= 1 - a * a


def _times_sigmoid_derivative(delta, a):
    delta *= a * (1 - a)


#: name -> apply the activation to the pre-activation buffer ``a`` in place
ACTIVATE = {"relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid}
#: name -> delta *= f'(z), with f'(z) written in terms of the activation's output a = f(z)
TIMES_DERIVATIVE = {"relu": _times_relu_derivative, "tanh": _times_tanh_derivative,
                    "sigmoid": _times_sigmoid_derivative}
#: the losses :meth:`NumpyImplementation._loss_and_output_delta` computes
LOSSES = ("mse", "cross_entropy")


class _Buffers:
    """Everything one batch size needs: activations, deltas and gradients, shapes per layer.

    acts[l]: (B, sizes[l]) for l = 1..L (acts[0] is the batch itself); deltas[l]: (B, sizes[l])
    for l = 1..L, dL/dz of layer l's outputs; grads: [(dW, db)] shaped like params.
    """

    def __init__(self, sizes, batch_size, dtype):
        self.acts = [None] + [np.empty((batch_size, n), dtype) for n in sizes[1:]]
        self.deltas = [None] + [np.empty((batch_size, n), dtype) for n in sizes[1:]]
        self.grads = [(np.empty((i, o), dtype), np.empty(o, dtype))
                      for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
        self.rows = np.arange(batch_size)


class NumpyImplementation(Implementation):
    name = "numpy"
    description = "vectorised NumPy (BLAS products, in-place elementwise work, reused buffers)"

    def _load_params(self, params):
        codes.require(self.name, self.net, ACTIVATE, LOSSES)
        self._params = params
        self._buffers = {}
        # per layer, looked up once: an activation missing from the tables was refused above
        self._activate = [ACTIVATE[a] for a in self.net.activations]
        self._times_derivative = [TIMES_DERIVATIVE[a] for a in self.net.activations]

    def _get_params(self):
        return self._params

    def _buffers_for(self, batch_size):
        buf = self._buffers.get(batch_size)
        if buf is None:
            if len(self._buffers) > 8:  # many distinct batch sizes: keep memory bounded
                self._buffers.clear()
            buf = self._buffers[batch_size] = _Buffers(self.net.sizes, batch_size, self.net.dtype)
        return buf

    def _forward_into(self, X, buf):
        """Forward pass into buf.acts; returns the output layer's buffer."""
        h = X
        last = self.net.n_layers - 1
        for layer, (W, b) in enumerate(self._params):
            a = buf.acts[layer + 1]
            np.dot(h, W, out=a)
            a += b
            if layer < last:
                self._activate[layer](a)
            h = a
        return h

    def _forward(self, X):
        return self._forward_into(X, self._buffers_for(X.shape[0])).copy()

    def _loss_and_output_delta(self, out, y, delta, rows):
        """Loss of the batch, and dL/d(out) written into ``delta``."""
        B = out.shape[0]
        if self.net.loss == "mse":
            np.subtract(out, y, out=delta)
            loss = float(np.vdot(delta, delta)) / delta.size
            delta *= 2.0 / delta.size
            return loss
        if self.net.loss != "cross_entropy":  # refused in _load_params; never guess a loss
            raise codes.NotImplementedByError(f"numpy does not implement {self.net.loss!r}")
        # softmax cross-entropy via log-sum-exp: shift by the row max so exp never overflows
        m = out.max(axis=1, keepdims=True)
        np.subtract(out, m, out=delta)
        # -log p[y] = log(sum exp(out - m)) - (out[y] - m): both terms small, so no float32
        # cancellation of two numbers near m (adding m back loses digits at logits of 1e4)
        shifted_y = delta[rows, y]      # a copy: fancy indexing
        np.exp(delta, out=delta)
        s = delta.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - shifted_y))
        delta /= s                      # softmax probabilities
        delta[rows, y] -= 1             # minus the one-hot targets
        delta /= B                      # mean over the batch
        return loss

    def _backward(self, X, y, buf, lr=None):
        """Loss, gradients into buf.grads; with lr, also the SGD update, layer by layer."""
        out = self._forward_into(X, buf)
        L = self.net.n_layers
        delta = buf.deltas[L]
        loss = self._loss_and_output_delta(out, y, delta, buf.rows)
        for layer in range(L - 1, -1, -1):
            W, b = self._params[layer]
            dW, db = buf.grads[layer]
            h = X if layer == 0 else buf.acts[layer]
            np.dot(h.T, delta, out=dW)
            np.sum(delta, axis=0, out=db)
            if layer > 0:
                below = buf.deltas[layer]
                np.dot(delta, W.T, out=below)
                self._times_derivative[layer - 1](below, h)
                delta = below
            if lr is not None:  # W is no longer needed for the chain rule: update it now
                dW *= lr
                W -= dW
                db *= lr
                b -= db
        return loss

    def _loss_and_grads(self, data):
        X, y = data
        buf = self._buffers_for(X.shape[0])
        loss = self._backward(X, y, buf)
        return loss, [(dW.copy(), db.copy()) for dW, db in buf.grads]

    def _step(self, data, lr):
        X, y = data
        return self._backward(X, y, self._buffers_for(X.shape[0]), lr)
