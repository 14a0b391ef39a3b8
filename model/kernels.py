"""Compiled per-pixel kernels for the fast sampler on the CPU (Numba).

One pixel of the gated model is a few dozen products of vectors with small matrices. In
NumPy each is a separate call costing microseconds of overhead, far more than its
arithmetic; compiled, every layer of a column is one call and the head another. Weights
come transposed, (out, in), so that each output is a contiguous dot product that the
compiler vectorises (fastmath lets it reorder the sum; the result moves by rounding only).
If Numba is not installed the sampler falls back to NumPy (same results, slower).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None


def _products(x, weights_t, out):
    """out[b, o] = x[b] . weights_t[o] for every b and o.

    Four outputs at a time: four independent sums hide the latency of each fused
    multiply-add, and each x[b, i] is loaded once for all four. Every index is a loop
    counter (never negative), which spares the wrap-around checks that stop vectorisation.
    """
    n_out = out.shape[1]
    blocked = n_out - n_out % 4
    for b in range(x.shape[0]):
        for o in range(0, blocked, 4):
            v = x[b, 0]  # sums start in the arrays' own precision (float32: 8 lanes)
            a0, a1, a2, a3 = v * weights_t[o, 0], v * weights_t[o + 1, 0], \
                v * weights_t[o + 2, 0], v * weights_t[o + 3, 0]
            for i in range(1, x.shape[1]):
                v = x[b, i]
                a0 += v * weights_t[o, i]
                a1 += v * weights_t[o + 1, i]
                a2 += v * weights_t[o + 2, i]
                a3 += v * weights_t[o + 3, i]
            out[b, o], out[b, o + 1], out[b, o + 2], out[b, o + 3] = a0, a1, a2, a3
        for o in range(blocked, n_out):
            acc = x[b, 0] * weights_t[o, 0]
            for i in range(1, x.shape[1]):
                acc += x[b, i] * weights_t[o, i]
            out[b, o] = acc


# tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 9 (beyond it tanh is 1 to float32 precision): a
# rational fit made for this project (weighted least squares, Loeb iterations), max error
# 5e-8 in float64 arithmetic. Unlike libm's tanh it has no branches, so it vectorises.
_P = (9.99999923e-01, 1.33847699e-01, 3.50027121e-03, 2.06950499e-05, 1.34898457e-08)
_Q = (1.0, 4.67180729e-01, 2.58941974e-02, 3.29368303e-04, 7.82852043e-07)


def _fast_tanh(x):
    x = min(max(x, -9.0), 9.0)
    s = x * x
    p = (((_P[4] * s + _P[3]) * s + _P[2]) * s + _P[1]) * s + _P[0]
    q = (((_Q[4] * s + _Q[3]) * s + _Q[2]) * s + _Q[1]) * s + _Q[0]
    return x * p / q


def _horizontal_column(col, hin, cins, kws, h_weights_t, link_rows, res_weights_t, res_biases,
                       gated, fast_tanh):
    """Every layer of the horizontal stack at one column of the current row.

    Arrays arrive stacked per layer and flattened: hin (L, B, padded columns * cin),
    h_weights_t (L, 2w, longest window), link_rows (L, B, W * 2w), gated (B, L * w).
    Same maths as GatedStepper.horizontal: the b half of the pre-activation arrives halved,
    so tanh(a) * (1 + tanh(b/2)) is twice the gate, and the consumers' weights carry the
    1/2. `fast_tanh` (for float32) swaps libm's tanh for the rational fit above.
    """
    batch = gated.shape[0]
    layers = hin.shape[0]
    width = gated.shape[1] // layers
    pre = np.empty((batch, 2 * width), gated.dtype)
    gate = np.empty((batch, width), gated.dtype)
    residual = np.empty((batch, width), gated.dtype)
    # Contiguous copies of the windows, zero-padded to the widest: the padding meets the
    # zero-padded weights, so every layer runs the same (vectorised) product.
    window = np.zeros((batch, h_weights_t.shape[2]), gated.dtype)
    for layer in range(layers):
        x = hin[layer]
        cin = cins[layer]
        kw = kws[layer]
        for b in range(batch):
            for i in range(kw * cin):
                window[b, i] = x[b, col * cin + i]
        _products(window, h_weights_t[layer], pre)
        link = link_rows[layer]
        offset = col * 2 * width
        for b in range(batch):
            for o in range(2 * width):
                pre[b, o] += link[b, offset + o]
        # Separate loops for the two tanh's, so that the branch is not taken per element.
        if fast_tanh:
            for b in range(batch):
                for o in range(width):
                    gate[b, o] = _fast_tanh(pre[b, o]) * (1.0 + _fast_tanh(pre[b, width + o]))
        else:
            for b in range(batch):
                for o in range(width):
                    gate[b, o] = math.tanh(pre[b, o]) * (1.0 + math.tanh(pre[b, width + o]))
        for b in range(batch):
            for o in range(width):
                gated[b, layer * width + o] = gate[b, o]
        if layer + 1 == layers:
            break
        out = hin[layer + 1]
        base = (col + kws[layer + 1] - 1) * width
        if layer == 0:  # the first layer has no residual: its output is the gate itself
            for b in range(batch):
                for o in range(width):
                    out[b, base + o] = 0.5 * gate[b, o]
            continue
        _products(gate, res_weights_t[layer], residual)
        centre = (col + kw - 1) * width
        for b in range(batch):
            for o in range(width):
                out[b, base + o] = x[b, centre + o] + res_biases[layer, o] + residual[b, o]


def _head(gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2):
    """The 1x1 output layers at one position: logits (B, outputs) for one channel."""
    batch = gated.shape[0]
    skip = np.empty((batch, skip_weight_t.shape[0]), gated.dtype)
    _products(gated, skip_weight_t, skip)
    for b in range(batch):
        for o in range(skip.shape[1]):
            skip[b, o] = max(skip[b, o] + skip_bias[o], 0.0)
    hidden = np.empty((batch, w1_t.shape[0]), gated.dtype)
    _products(skip, w1_t, hidden)
    for b in range(batch):
        for o in range(hidden.shape[1]):
            hidden[b, o] = max(hidden[b, o] + b1[o], 0.0)
    logits = np.empty((batch, w2_t.shape[0]), gated.dtype)
    _products(hidden, w2_t, logits)
    for b in range(batch):
        for o in range(logits.shape[1]):
            logits[b, o] += b2[o]
    return logits


if AVAILABLE:
    _compile = numba.njit(cache=True, nogil=True, fastmath=True)
    _products = numba.njit(inline="always", fastmath=True)(_products)
    _fast_tanh = numba.njit(inline="always", fastmath=True)(_fast_tanh)
    horizontal_column = _compile(_horizontal_column)
    head = _compile(_head)
else:  # pragma: no cover
    horizontal_column = head = None
