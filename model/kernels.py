"""Compiled per-pixel kernels for the fast sampler on the CPU (Numba).

One pixel of the gated model is a few dozen products of vectors with small matrices. In
NumPy each is a separate call costing microseconds of overhead, far more than its
arithmetic; compiled, every layer of a column and the head are one call. Weights
come transposed, (out, in), so that each output is a contiguous dot product that the
compiler vectorises (fastmath lets it reorder the sum; the result moves by rounding only).
If Numba is not installed the sampler falls back to NumPy (same results, slower).
"""

from __future__ import annotations

import math
import os
import sys
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
# 5e-8 in float64 arithmetic, 3e-7 in the float32 arithmetic used here (float64 constants
# would make every step a conversion and a double operation: 10% slower with 9 candidates).
# Unlike libm's tanh it has no branches. (LLVM still leaves its division scalar in these
# loops: not vectorised, measured from the machine code.) Only float32 completions use it.
_P = tuple(np.float32(c) for c in (
    9.99999923e-01, 1.33847699e-01, 3.50027121e-03, 2.06950499e-05, 1.34898457e-08))
_Q = tuple(np.float32(c) for c in (
    1.0, 4.67180729e-01, 2.58941974e-02, 3.29368303e-04, 7.82852043e-07))
_LIMIT, _ONE = np.float32(9.0), np.float32(1.0)


def _fast_tanh(x):
    x = min(max(x, -_LIMIT), _LIMIT)
    s = x * x
    p = (((_P[4] * s + _P[3]) * s + _P[2]) * s + _P[1]) * s + _P[0]
    q = (((_Q[4] * s + _Q[3]) * s + _Q[2]) * s + _Q[1]) * s + _Q[0]
    return x * p / q


def _pair_products(x, weights_t, out):
    """out[j, o] = x[j] . weights_t[o] for the two rows j of x: each weight is loaded
    once for both candidates (measured alone, 64 x 64 products: 13 GMAC/s against 7 for
    _products one row at a time)."""
    n_out = out.shape[1]
    blocked = n_out - n_out % 4
    x0, x1 = x[0], x[1]
    for o in range(0, blocked, 4):
        u, v = x0[0], x1[0]
        w0, w1, w2, w3 = weights_t[o, 0], weights_t[o + 1, 0], weights_t[o + 2, 0], \
            weights_t[o + 3, 0]
        a0, a1, a2, a3 = u * w0, u * w1, u * w2, u * w3
        b0, b1, b2, b3 = v * w0, v * w1, v * w2, v * w3
        for i in range(1, x0.shape[0]):
            u, v = x0[i], x1[i]
            w0, w1, w2, w3 = weights_t[o, i], weights_t[o + 1, i], weights_t[o + 2, i], \
                weights_t[o + 3, i]
            a0 += u * w0
            a1 += u * w1
            a2 += u * w2
            a3 += u * w3
            b0 += v * w0
            b1 += v * w1
            b2 += v * w2
            b3 += v * w3
        out[0, o], out[0, o + 1], out[0, o + 2], out[0, o + 3] = a0, a1, a2, a3
        out[1, o], out[1, o + 1], out[1, o + 2], out[1, o + 3] = b0, b1, b2, b3
    for o in range(blocked, n_out):
        for j in range(2):
            acc = x[j, 0] * weights_t[o, 0]
            for i in range(1, x0.shape[0]):
                acc += x[j, i] * weights_t[o, i]
            out[j, o] = acc


def _group_products(x, count, weights_t, out):
    """The products of the first `count` (1 or 2) rows of x."""
    if count == 2:
        _pair_products(x, weights_t, out)
    else:
        _products(x[0], weights_t, out[0])


# Candidates are independent; the kernels take them in groups of two (one alone where a
# share of them is odd) only to share weight loads. Candidate k's arithmetic is the same
# whichever group it is in.
GROUP = 2


def _group_column(first, count, col, hin, cins, kws, h_weights_t, link_rows, res_weights_t,
                  res_biases, gated, fast_tanh):
    """Every layer of the horizontal stack at one column of the current row, for
    candidates first .. first + count - 1.

    Arrays arrive stacked per layer and flattened: hin (L, B, padded columns * cin),
    h_weights_t (L, 2w, longest window), link_rows (L, B, W * 2w), gated (B, L * w).
    Same maths as GatedStepper.horizontal: the b half of the pre-activation arrives halved,
    so tanh(a) * (1 + tanh(b/2)) is twice the gate, and the consumers' weights carry the
    1/2. `fast_tanh` (for float32) swaps libm's tanh for the rational fit above.
    """
    layers = hin.shape[0]
    width = gated.shape[1] // layers
    pre = np.empty((GROUP, 2 * width), gated.dtype)
    gate = np.empty((GROUP, width), gated.dtype)
    residual = np.empty((GROUP, width), gated.dtype)
    # Contiguous copies of the windows, zero-padded to the widest: the padding meets the
    # zero-padded weights, so every layer runs the same (vectorised) product.
    window = np.zeros((GROUP, h_weights_t.shape[2]), gated.dtype)
    for layer in range(layers):
        cin = cins[layer]
        kw = kws[layer]
        for j in range(count):
            x = hin[layer, first + j]
            for i in range(kw * cin):
                window[j, i] = x[col * cin + i]
        _group_products(window, count, h_weights_t[layer], pre)
        for j in range(count):
            b = first + j
            link = link_rows[layer, b]
            offset = col * 2 * width
            for o in range(2 * width):
                pre[j, o] += link[offset + o]
            # Separate loops for the two tanh's, so that the branch is not taken per element.
            if fast_tanh:
                for o in range(width):
                    gate[j, o] = _fast_tanh(pre[j, o]) * (_ONE + _fast_tanh(pre[j, width + o]))
            else:
                for o in range(width):
                    gate[j, o] = math.tanh(pre[j, o]) * (1.0 + math.tanh(pre[j, width + o]))
            for o in range(width):
                gated[b, layer * width + o] = gate[j, o]
        if layer + 1 == layers:
            break
        base = (col + kws[layer + 1] - 1) * width
        if layer == 0:  # the first layer has no residual: its output is the gate itself
            for j in range(count):
                out = hin[layer + 1, first + j]
                for o in range(width):
                    out[base + o] = 0.5 * gate[j, o]
            continue
        _group_products(gate, count, res_weights_t[layer], residual)
        centre = (col + kw - 1) * width
        for j in range(count):
            x, out = hin[layer, first + j], hin[layer + 1, first + j]
            for o in range(width):
                out[base + o] = x[centre + o] + res_biases[layer, o] + residual[j, o]


def _column_logits(shares, col, hin, cins, kws, h_weights_t, link_rows, res_weights_t, res_biases,
                   gated, fast_tanh, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2):
    """The horizontal stack at one column (_group_column), then the 1x1 output layers
    there: the logits (B, outputs) of one channel. One call, because a sampled
    pixel-channel needs both and each call has a cost of its own. The candidates are
    dealt out in `shares` (one per thread in the parallel build) of nearly equal size:
    9 candidates on two cores are 5 and 4, where pairs dealt out would be 6 and 3."""
    batch = gated.shape[0]
    logits = np.empty((batch, w2_t.shape[0]), gated.dtype)
    for share in numba_prange(shares):
        end = (share + 1) * batch // shares
        for first in range(share * batch // shares, end, GROUP):
            count = min(GROUP, end - first)
            _group_column(first, count, col, hin, cins, kws, h_weights_t, link_rows,
                          res_weights_t, res_biases, gated, fast_tanh)
            _group_head(first, count, gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2,
                        logits)
    return logits


def _group_head(first, count, gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2, logits):
    skip = np.empty((GROUP, skip_weight_t.shape[0]), gated.dtype)
    _group_products(gated[first:first + count], count, skip_weight_t, skip)
    hidden = np.empty((GROUP, w1_t.shape[0]), gated.dtype)
    for j in range(count):
        for o in range(skip.shape[1]):
            skip[j, o] = max(skip[j, o] + skip_bias[o], 0.0)
    _group_products(skip, count, w1_t, hidden)
    out = np.empty((GROUP, w2_t.shape[0]), gated.dtype)
    for j in range(count):
        for o in range(hidden.shape[1]):
            hidden[j, o] = max(hidden[j, o] + b1[o], 0.0)
    _group_products(hidden, count, w2_t, out)
    for j in range(count):
        for o in range(out.shape[1]):
            logits[first + j, o] = out[j, o] + b2[o]


def _vertical_gate(v_pre, v_bias, vin, top, left, fast_tanh):
    """The vertical stack's bias and gate for finished rows, written to the next layer's input.

    v_pre (B, rows, W, 2w) gets its bias (1, 1, 1, 2w: the candidates share their class)
    added in place (the link reads it); the gates go to vin[:, top + r, left + c] (the next
    layer's padded input, whole, so that every array here is contiguous). As in the
    horizontal stack, tanh(a) * (1 + tanh(b/2)) is twice the gate; the next layer's weights
    carry the 1/2.
    """
    batch, rows, width, outputs = v_pre.shape
    half = outputs // 2
    for b in range(batch):
        for r in range(rows):
            for c in range(width):
                for o in range(outputs):
                    v_pre[b, r, c, o] += v_bias[0, 0, 0, o]
                if fast_tanh:
                    for o in range(half):
                        vin[b, top + r, left + c, o] = _fast_tanh(v_pre[b, r, c, o]) * (
                            _ONE + _fast_tanh(v_pre[b, r, c, half + o]))
                else:
                    for o in range(half):
                        vin[b, top + r, left + c, o] = math.tanh(v_pre[b, r, c, o]) * (
                            1.0 + math.tanh(v_pre[b, r, c, half + o]))


numba_prange = range  # numba.prange in the parallel build; plain range when interpreted


def threads() -> int:
    """How many threads the parallel builds run on."""
    return numba.get_num_threads()


def cache_report() -> str | None:
    """Where this process's kernels came from: loaded from Numba's on-disk cache, or compiled
    now (and whether they were saved for the next start). None before any kernel has run.

    The packaged app has no source files beside its modules; Numba then caches in the
    user's cache folder (e.g. ~/.cache/numba), keyed to the executable and (see
    _pin_source_path) the bundle's folder, so only the first start of a new build compiles."""
    if not AVAILABLE:
        return None
    stats = [kernel.stats for kernel in (column_logits, parallel_column_logits, vertical_gate)]
    loaded = sum(sum(s.cache_hits.values()) for s in stats)
    compiled = sum(sum(s.cache_misses.values()) for s in stats)
    folders = sorted({str(s.cache_path) for s in stats if s.cache_path is not None})
    if loaded + compiled == 0:
        return None
    if not folders:
        return "compiled at this start: no writable cache folder, so every start compiles"
    where = ", ".join(folders)
    if compiled == 0:
        return f"loaded from the on-disk cache in {where}"
    return (f"compiled at this start ({compiled} of {loaded + compiled} builds) and saved in "
            f"{where} for the next")


def _pin_source_path(function) -> None:
    """In a frozen app a module's functions name their file relative to the folder the app
    was started from ("model/kernels.py"), and Numba names its cache folder after that path
    made absolute: every starting folder would compile the kernels anew (and keep another
    copy), and one holding this project's source would get the app's kernels mixed into its
    cache. Pin the path to the bundle's own folder."""
    code = function.__code__
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle and not os.path.isabs(code.co_filename):
        function.__code__ = code.replace(co_filename=os.path.join(bundle, code.co_filename))


def _jit(function, **options):
    """`function` compiled, cached on disk where there is somewhere to write the cache."""
    _pin_source_path(function)
    try:
        return numba.njit(cache=True, fastmath=True, nogil=True, **options)(function)
    except RuntimeError:  # no writable cache folder (e.g. a read-only install)
        return numba.njit(fastmath=True, nogil=True, **options)(function)


def _compiled(function, parallel: bool):
    """`function`'s serial or parallel build. The parallel build is compiled from a renamed
    copy: Numba names its cache files after the function, and does not tell the two builds
    of one function apart when loading (it would hand one the other's machine code)."""
    if parallel:
        name = function.__name__ + "_parallel"
        function = types.FunctionType(function.__code__, function.__globals__, name)
        function.__qualname__ = name  # the cache files are named after the qualified name
    return _jit(function, parallel=parallel)


if AVAILABLE:
    # The small helpers are inlined where they are used. The per-group functions are
    # compiled once and called by both builds of the column kernel: inlined into them,
    # they made Numba's compilation (the first start of a new installation waits for it)
    # about three times longer.
    _products, _pair_products, _fast_tanh = (
        numba.njit(inline="always", fastmath=True)(f)
        for f in (_products, _pair_products, _fast_tanh))
    _group_products, _group_column, _group_head = (
        _jit(f) for f in (_group_products, _group_column, _group_head))
    numba_prange = numba.prange
    # The column kernel runs once per sampled value: serial for one candidate, parallel
    # (an even share of the candidates per core) for several. The vertical gate runs once per
    # layer and row, next to a BLAS product that dominates it: serial only. All compile on
    # first use (seconds, then cached on disk).
    column_logits = _compiled(_column_logits, parallel=False)
    parallel_column_logits = _compiled(_column_logits, parallel=True)
    vertical_gate = _compiled(_vertical_gate, parallel=False)
else:  # pragma: no cover
    column_logits = parallel_column_logits = vertical_gate = None
