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
import types

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None


def _products(x, weights_t, out):
    """out[o] = x . weights_t[o] for every o, for one candidate.

    Four outputs at a time: four independent sums hide the latency of each fused
    multiply-add, and each x[i] is loaded once for all four. Every index is a loop
    counter (never negative), which spares the wrap-around checks that stop vectorisation.
    """
    n_out = out.shape[0]
    blocked = n_out - n_out % 4
    for o in range(0, blocked, 4):
        v = x[0]  # sums start in the arrays' own precision (float32: 8 lanes)
        a0, a1, a2, a3 = v * weights_t[o, 0], v * weights_t[o + 1, 0], \
            v * weights_t[o + 2, 0], v * weights_t[o + 3, 0]
        for i in range(1, x.shape[0]):
            v = x[i]
            a0 += v * weights_t[o, i]
            a1 += v * weights_t[o + 1, i]
            a2 += v * weights_t[o + 2, i]
            a3 += v * weights_t[o + 3, i]
        out[o], out[o + 1], out[o + 2], out[o + 3] = a0, a1, a2, a3
    for o in range(blocked, n_out):
        acc = x[0] * weights_t[o, 0]
        for i in range(1, x.shape[0]):
            acc += x[i] * weights_t[o, i]
        out[o] = acc


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
    Candidates are independent, so each runs the same code on its own (and, in the
    parallel build, on its own core): candidate k's arithmetic never depends on how many
    candidates there are.
    """
    batch = gated.shape[0]
    for b in numba_prange(batch):
        _candidate_column(b, col, hin, cins, kws, h_weights_t, link_rows, res_weights_t,
                          res_biases, gated, fast_tanh)


def _candidate_column(b, col, hin, cins, kws, h_weights_t, link_rows, res_weights_t,
                      res_biases, gated, fast_tanh):
    layers = hin.shape[0]
    width = gated.shape[1] // layers
    pre = np.empty(2 * width, gated.dtype)
    gate = np.empty(width, gated.dtype)
    residual = np.empty(width, gated.dtype)
    # A contiguous copy of the window, zero-padded to the widest: the padding meets the
    # zero-padded weights, so every layer runs the same (vectorised) product.
    window = np.zeros(h_weights_t.shape[2], gated.dtype)
    for layer in range(layers):
        x = hin[layer, b]
        cin = cins[layer]
        kw = kws[layer]
        for i in range(kw * cin):
            window[i] = x[col * cin + i]
        _products(window, h_weights_t[layer], pre)
        link = link_rows[layer, b]
        offset = col * 2 * width
        for o in range(2 * width):
            pre[o] += link[offset + o]
        # Separate loops for the two tanh's, so that the branch is not taken per element.
        if fast_tanh:
            for o in range(width):
                gate[o] = _fast_tanh(pre[o]) * (1.0 + _fast_tanh(pre[width + o]))
        else:
            for o in range(width):
                gate[o] = math.tanh(pre[o]) * (1.0 + math.tanh(pre[width + o]))
        for o in range(width):
            gated[b, layer * width + o] = gate[o]
        if layer + 1 == layers:
            break
        out = hin[layer + 1, b]
        base = (col + kws[layer + 1] - 1) * width
        if layer == 0:  # the first layer has no residual: its output is the gate itself
            for o in range(width):
                out[base + o] = 0.5 * gate[o]
            continue
        _products(gate, res_weights_t[layer], residual)
        centre = (col + kw - 1) * width
        for o in range(width):
            out[base + o] = x[centre + o] + res_biases[layer, o] + residual[o]


def _column_logits(col, hin, cins, kws, h_weights_t, link_rows, res_weights_t, res_biases,
                   gated, fast_tanh, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2):
    """_horizontal_column, then the 1x1 output layers at that position: the logits (B,
    outputs) of one channel. One call, because a sampled pixel-channel needs both and
    each call (a parallel launch with several candidates) has a cost of its own."""
    batch = gated.shape[0]
    logits = np.empty((batch, w2_t.shape[0]), gated.dtype)
    for b in numba_prange(batch):
        _candidate_column(b, col, hin, cins, kws, h_weights_t, link_rows, res_weights_t,
                          res_biases, gated, fast_tanh)
        _candidate_head(b, gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2, logits)
    return logits


def _candidate_head(b, gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2, logits):
    skip = np.empty(skip_weight_t.shape[0], gated.dtype)
    _products(gated[b], skip_weight_t, skip)
    for o in range(skip.shape[0]):
        skip[o] = max(skip[o] + skip_bias[o], 0.0)
    hidden = np.empty(w1_t.shape[0], gated.dtype)
    _products(skip, w1_t, hidden)
    for o in range(hidden.shape[0]):
        hidden[o] = max(hidden[o] + b1[o], 0.0)
    _products(hidden, w2_t, logits[b])
    for o in range(logits.shape[1]):
        logits[b, o] += b2[o]


def _vertical_gate(v_pre, v_bias, vin, top, left, fast_tanh):
    """The vertical stack's bias and gate for finished rows, written to the next layer's input.

    v_pre (B, rows, W, 2w) gets its bias (B, 1, 1, 2w) added in place (the link reads it);
    the gates go to vin[:, top + r, left + c] (the next layer's padded input, whole, so that
    every array here is contiguous and the loops vectorise). As in the horizontal stack,
    tanh(a) * (1 + tanh(b/2)) is twice the gate; the next layer's weights carry the 1/2.
    """
    batch, rows, width, outputs = v_pre.shape
    half = outputs // 2
    for b in numba_prange(batch):
        for r in range(rows):
            for c in range(width):
                for o in range(outputs):
                    v_pre[b, r, c, o] += v_bias[b, 0, 0, o]
                if fast_tanh:
                    for o in range(half):
                        vin[b, top + r, left + c, o] = _fast_tanh(v_pre[b, r, c, o]) * (
                            1.0 + _fast_tanh(v_pre[b, r, c, half + o]))
                else:
                    for o in range(half):
                        vin[b, top + r, left + c, o] = math.tanh(v_pre[b, r, c, o]) * (
                            1.0 + math.tanh(v_pre[b, r, c, half + o]))


numba_prange = range  # numba.prange in the parallel build; plain range when interpreted


def _compiled(function, parallel: bool):
    """`function` compiled, cached on disk where there is somewhere to write the cache.

    The parallel build is compiled from a renamed copy: Numba names its cache files after
    the function, and does not tell the two builds of one function apart when loading.
    """
    if parallel:
        function = types.FunctionType(function.__code__, function.__globals__,
                                      function.__name__ + "_parallel")
    options = dict(nogil=True, fastmath=True, parallel=parallel)
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # no writable cache folder (e.g. a read-only install)
        return numba.njit(**options)(function)


def _builds(function):
    return _compiled(function, parallel=False), _compiled(function, parallel=True)


if AVAILABLE:
    _products = numba.njit(inline="always", fastmath=True)(_products)
    _fast_tanh = numba.njit(inline="always", fastmath=True)(_fast_tanh)
    _candidate_column = numba.njit(inline="always", fastmath=True)(_candidate_column)
    _candidate_head = numba.njit(inline="always", fastmath=True)(_candidate_head)
    numba_prange = numba.prange
    # Each kernel's serial build, and its parallel build (one candidate per core), both
    # compiled on first use (seconds, then cached on disk).
    horizontal_column, parallel_horizontal_column = _builds(_horizontal_column)
    column_logits, parallel_column_logits = _builds(_column_logits)
    vertical_gate, parallel_vertical_gate = _builds(_vertical_gate)
else:  # pragma: no cover
    horizontal_column = column_logits = vertical_gate = None
    parallel_horizontal_column = parallel_column_logits = parallel_vertical_gate = None
