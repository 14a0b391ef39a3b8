"""Compiled kernels for the fast sampler on the CPU (Numba).

One pixel of the gated model is a few dozen products of vectors with small matrices. In
NumPy each is a separate call costing microseconds of overhead, far more than its
arithmetic; compiled, a whole row of pixels (every layer of each column, the head, the
distribution and the draw) is one call, and a finished row's vertical stack another.
Weights come transposed, (out, in), so that each output is a contiguous dot product that the
compiler vectorises (fastmath lets it reorder the sum; the result moves by rounding only).
If Numba is not installed the sampler falls back to NumPy (same results, slower).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None


def _products(x, weights_t, out):
    """out[o] = x . weights_t[o] for every row o of weights_t, for one candidate.

    Four outputs at a time: four independent sums hide the latency of each fused
    multiply-add, and each x[i] is loaded once for all four. Every index is a loop
    counter (never negative), which spares the wrap-around checks that stop vectorisation.
    """
    n_out = weights_t.shape[0]
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
    n_out = weights_t.shape[0]
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
    """The products of the first `count` (1 to 5) rows of x: four at once (each weight loaded
    once for the four, by _window_products, which takes a fifth after them, its weights
    still in the nearest cache), else two, then one. (Each helper is written out here once:
    Numba inlines them, and compiling each copy takes seconds.)"""
    n_out = weights_t.shape[0]
    if count >= 4:
        for j in range(count):
            for o in range(n_out):
                out[j, o] = 0
        start = n_out - n_out  # 0 (and count for 4), computed: a literal argument makes Numba
        # compile another copy
        _window_products(x.reshape(-1), start, x.shape[1], count, x.shape[1], weights_t, start,
                         out)
        return
    if count >= 2:
        _pair_products(x, weights_t, out)
    if count % 2:
        _products(x[count - 1], weights_t, out[count - 1])


# Candidates are independent; the kernels take them in groups of four only to share weight
# loads. A fifth left over joins the group before it (9 candidates: 4 and 5, not 4, 4 and 1):
# alone it would cost more than half what a group of four costs.
GROUP = 4
LARGEST_GROUP = GROUP + 1


def group_size(left):
    """How many of the `left` candidates the next group takes."""
    return left if left == LARGEST_GROUP else min(GROUP, left)


def _group_column(first, count, col, low, high, hin, cins, kws, h_weights_t, link_rows,
                  res_weights_t, res_biases, gated, fast_tanh, scratch):
    """Every layer of the horizontal stack at one column of the current row, for
    candidates first .. first + count - 1: the hidden channels low .. high-1 of each layer.

    A colour model's hidden channels come in colour groups (R, G, B), and at the current
    pixel group g sees only the image's channels before g (masks A and B): once R is drawn,
    only the G and B groups there can change, and G's logits read groups R and G alone. So
    for channel c only group c is computed (a third of a column), the groups before it being
    final (in `gated` and the next layer's input, from the passes for the earlier channels);
    a known column gets every channel at once. Weights from later groups are masked to
    zero, so their stale values there are never read into a result.

    Arrays arrive stacked per layer and flattened: hin (L, B, padded columns * cin),
    h_weights_t (L, 2w, longest window), link_rows (L, B, W * 2w), gated (B, L * w).
    Same maths as GatedStepper.horizontal: the b half of the pre-activation arrives halved,
    so tanh(a) * (1 + tanh(b/2)) is twice the gate, and the consumers' weights carry the
    1/2. `fast_tanh` (for float32) swaps libm's tanh for the rational fit above.

    `scratch` (_scratch) is the caller's, made once per row rather than once per call.
    """
    layers = hin.shape[0]
    width = gated.shape[1] // layers
    n = high - low
    # The gates' a and b halves for low .. high-1, the residual, the whole gate.
    pre_a = scratch[0][:LARGEST_GROUP * n].reshape(LARGEST_GROUP, n)
    pre_b = scratch[1][:LARGEST_GROUP * n].reshape(LARGEST_GROUP, n)
    residual = scratch[2][:LARGEST_GROUP * n].reshape(LARGEST_GROUP, n)
    gate = scratch[3][:LARGEST_GROUP * width].reshape(LARGEST_GROUP, width)
    # Contiguous copies of the windows, padded to the widest: the padding (zeros, or a
    # shorter layer's leftovers, finite either way) meets the zero-padded weights, so every
    # layer runs the same (vectorised) product.
    longest = h_weights_t.shape[2]
    window = scratch[4][:LARGEST_GROUP * longest].reshape(LARGEST_GROUP, longest)
    # Computed indices are taken as slices first, and the loops index those by their counters
    # only: an index that may be negative gets a wrap-around check, which stops vectorisation.
    for layer in range(layers):
        cin = cins[layer]
        kw = kws[layer]
        for j in range(count):
            x = hin[layer, first + j][col * cin:(col + kw) * cin]
            for i in range(kw * cin):
                window[j, i] = x[i]
        _group_products(window, count, h_weights_t[layer, low:high], pre_a)
        _group_products(window, count, h_weights_t[layer, width + low:width + high], pre_b)
        for j in range(count):
            b = first + j
            offset = col * 2 * width
            link_a = link_rows[layer, b][offset + low:offset + high]
            link_b = link_rows[layer, b][offset + width + low:offset + width + high]
            for o in range(n):
                pre_a[j, o] += link_a[o]
                pre_b[j, o] += link_b[o]
            gates = gated[b, layer * width + low:layer * width + high]
            # Separate loops for the two tanh's, so that the branch is not taken per element.
            if fast_tanh:
                for o in range(n):
                    gates[o] = _fast_tanh(pre_a[j, o]) * (_ONE + _fast_tanh(pre_b[j, o]))
            else:
                for o in range(n):
                    gates[o] = math.tanh(pre_a[j, o]) * (1.0 + math.tanh(pre_b[j, o]))
        if layer + 1 == layers:
            break
        base = (col + kws[layer + 1] - 1) * width + low
        if layer == 0:  # the first layer has no residual: its output is the gate itself
            for j in range(count):
                out = hin[layer + 1, first + j][base:base + n]
                gates = gated[first + j, low:high]
                for o in range(n):
                    out[o] = 0.5 * gates[o]
            continue
        for j in range(count):  # the whole gate: group g's residual reads groups <= g
            gates = gated[first + j, layer * width:(layer + 1) * width]
            for o in range(width):
                gate[j, o] = gates[o]
        _group_products(gate, count, res_weights_t[layer, low:high], residual)
        centre = (col + kw - 1) * width + low
        biases = res_biases[layer, low:high]
        for j in range(count):
            x = hin[layer, first + j][centre:centre + n]
            out = hin[layer + 1, first + j][base:base + n]
            for o in range(n):
                out[o] = x[o] + biases[o] + residual[j, o]


def _sample_share(first, end, shared, row, col, channel, last_col, known_row, hin, cins, kws,
                  h_weights_t, link_rows, res_weights_t, res_biases, gated, fast_tanh,
                  skip_weight_t, skip_bias, w1_t, b1, w2_t, b2, bernoulli, temperature,
                  top_level, uniforms, values, probs):
    """Sample row `row` from (col, channel) through last_col, in raster order, for candidate
    states first .. end-1: the horizontal stack at each column (_group_column), then at an
    unknown pixel for each channel the head (_group_head), the distribution and the value
    drawn (_draw_values), which is written where the next column (or channel) reads it.
    Known columns get the horizontal stack only.

    Draws go to values (B, W, C) and probs (B, W, C, K). `shared`: one state (first = 0,
    end = 1) stands for every candidate; each candidate draws with its own uniform from the
    one distribution, and the run stops after the first value they draw differently (the
    caller then gives each its own state). Returns how many pixel-channels were drawn.

    Candidates are independent and the kernel holds no lock: several threads may each run
    a share of them at once (model/fast.py does, one share per core)."""
    channels = w2_t.shape[0]
    logits = np.empty((gated.shape[0], w2_t.shape[1]), gated.dtype)
    first_input = kws[0] - 1  # hin[0]'s columns are padded on the left by kw - 1
    width = gated.shape[1] // hin.shape[0]
    group = width // channels  # hidden channels per colour group
    every = group - group  # 0, computed: a literal 0 would make Numba compile a second copy
    scratch = _scratch(gated, h_weights_t, skip_weight_t, w1_t, w2_t)
    skip = np.zeros((gated.shape[0], skip_weight_t.shape[0]), gated.dtype)
    hidden = np.zeros((gated.shape[0], w1_t.shape[0]), gated.dtype)
    drawn = 0
    for c in range(col, last_col + 1):
        if known_row[c]:  # its value is in hin[0] already: the stack, for the columns after
            g = first
            while g < end:
                count = _group_size(end - g)
                _group_column(g, count, c, every, width, hin, cins, kws, h_weights_t,
                              link_rows, res_weights_t, res_biases, gated, fast_tanh, scratch)
                g += count
            continue
        # G and B see the values just drawn for this pixel: their groups are computed after.
        start = channel if c == col else 0
        for ch in range(start, channels):
            # The head's groups before this channel's were computed at this pixel's earlier
            # channels, in this call from `start` on (see _group_head).
            head_low = ch * group if ch > start else every
            g = first
            while g < end:
                count = _group_size(end - g)
                _group_column(g, count, c, ch * group, (ch + 1) * group, hin, cins, kws,
                              h_weights_t, link_rows, res_weights_t, res_biases, gated,
                              fast_tanh, scratch)
                _group_head(g, count, head_low, (ch + 1) * group, gated, skip_weight_t,
                            skip_bias, w1_t, b1, w2_t[ch], b2[ch], skip, hidden, scratch,
                            logits)
                g += count
            drawn += 1
            if _draw_values(first, end, shared, row, c, ch, logits, bernoulli, temperature,
                            uniforms, values, probs, hin, (first_input + c) * cins[0] + ch,
                            top_level):
                return drawn
    return drawn


def _draw_values(first, end, shared, row, c, ch, logits, bernoulli, temperature, uniforms,
                 values, probs, hin, at, top_level):
    """The distributions of pixel-channel (row, c, ch) from candidate states first .. end-1's
    logits, the values drawn, and each written to hin[0] at `at` for what comes next. Shared
    (one state for every candidate): True when the candidates drew differently, and then
    nothing is written."""
    if shared:
        _probabilities(logits[0], bernoulli, temperature, probs[0, c, ch])
        split = False
        for k in range(uniforms.shape[0]):
            # Copied value by value: Numba takes seconds longer to compile a slice copy.
            for i in range(probs.shape[3] if k else 0):
                probs[k, c, ch, i] = probs[0, c, ch, i]
            values[k, c, ch] = _draw(probs[0, c, ch], uniforms[k, ch, row, c])
            split = split or values[k, c, ch] != values[0, c, ch]
        if not split:
            hin[0, 0, at] = values[0, c, ch] / top_level
        return split
    for b in range(first, end):
        _probabilities(logits[b], bernoulli, temperature, probs[b, c, ch])
        values[b, c, ch] = _draw(probs[b, c, ch], uniforms[b, ch, row, c])
        hin[0, b, at] = values[b, c, ch] / top_level
    return False


def _block_sum(a, start, n):
    """a[start:start + n].sum() for n <= 128, as NumPy adds it up: in order below eight
    values, else in eight interleaved partial sums, then the rest in order."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += a[i]
        return total
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    blocked = n - n % 8
    for i in range(start + 8, start + blocked, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(start + blocked, start + n):
        total += a[i]
    return total


def _pairwise_sum(a):
    """a.sum() as NumPy adds it up (pairwise: halves of a multiple of eight values until a
    part has at most 128, each part by _block_sum), so that probabilities are normalised by
    the very same float64 number in both samplers. NumPy's recursion is run on an explicit
    stack: Numba's on-disk cache mishandles recursive functions (loading one crashed)."""
    n = a.shape[0]
    if n <= 128:
        return _block_sum(a, 0, n)
    # Frames of the recursion: where a part starts, its size, how far it got (0: not
    # started, 1: left half summed, 2: both) and its left half's sum.
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    stages = np.zeros(64, np.int64)
    lefts = np.empty(64)
    starts[0], sizes[0], depth, result = 0, n, 1, 0.0
    while depth:
        f = depth - 1
        size = sizes[f]
        half = size // 2 - (size // 2) % 8
        if size <= 128:
            result = _block_sum(a, starts[f], size)
            depth -= 1
        elif stages[f] == 0:  # the left half first
            stages[f] = 1
            starts[depth], sizes[depth], stages[depth] = starts[f], half, 0
            depth += 1
        elif stages[f] == 1:  # then the right one
            stages[f], lefts[f] = 2, result
            starts[depth], sizes[depth], stages[depth] = starts[f] + half, size - half, 0
            depth += 1
        else:
            result = lefts[f] + result
            depth -= 1
    return result


def _probabilities(logits, bernoulli, temperature, probs):
    """distributions.probabilities for one row of logits, written to probs (K,): the same
    float64 operations in the same order. Compiled without fastmath, which would reorder
    them. (libm's tanh and exp can differ from NumPy's by a unit in the last place on some
    machines; a draw then differs only if its uniform falls within ~1e-16 of a boundary.)"""
    levels = probs.shape[0]
    if bernoulli:
        logit = np.float64(logits[0])
        if temperature <= 0:
            p1 = 1.0 if logit > 0 else 0.0
        else:  # sigmoid, written with tanh so that no logit overflows
            p1 = 0.5 + 0.5 * math.tanh(logit / (2 * temperature))
        probs[1] = p1
        probs[0] = 1.0 - p1
    elif temperature <= 0:  # all mass on the most likely value, the first one on a tie
        best = 0
        for i in range(1, levels):
            if logits[i] > logits[best]:
                best = i
        for i in range(levels):
            probs[i] = 1.0 if i == best else 0.0
    else:
        for i in range(levels):
            probs[i] = np.float64(logits[i]) / temperature
        top = probs[0]
        for i in range(1, levels):
            top = max(top, probs[i])
        for i in range(levels):
            probs[i] = math.exp(probs[i] - top)
        total = _pairwise_sum(probs)
        for i in range(levels):
            probs[i] /= total


def _draw(probs, uniform):
    """distributions.draw for one candidate: the value whose cumulative mass passes u."""
    levels = probs.shape[0]
    if levels == 2:
        return 1 if probs[0] <= uniform else 0
    cumulative = 0.0
    passed = 0
    for i in range(levels):
        cumulative += probs[i]
        if cumulative <= uniform:
            passed += 1
    return min(passed, levels - 1)


def _group_head(first, count, low, high, gated, skip_weight_t, skip_bias, w1_t, b1, w2_t, b2,
                skip, hidden, scratch, logits):
    """One channel's logits from every layer's gate (the skip sum, then the head), for
    candidates first .. first + count - 1.

    skip and hidden (B, w) hold each candidate's head activations at the current pixel. Of
    a colour model's, only this channel's colour group, rows low .. high-1, is computed: the
    groups before it read only earlier groups (mask B), which this channel's pass left as
    they were, so they are kept from the channels before (`low` is 0 where those are not
    there yet: a pixel's first channel, or a run that starts within a pixel). The rows from
    `high` on belong to later groups, which this channel's logits do not read (their
    weights are zero): what they hold (a previous pixel's values, finite) never reaches a
    result. Without colour groups low is 0 and high the width: every row."""
    n = high - low
    part = scratch[0][:LARGEST_GROUP * n].reshape(LARGEST_GROUP, n)
    _group_products(gated[first:first + count], count, skip_weight_t[low:high], part)
    biases = skip_bias[low:high]  # (slices first: see _group_column)
    for j in range(count):
        row = skip[first + j][low:high]
        for o in range(n):
            row[o] = max(part[j, o] + biases[o], 0.0)
    _group_products(skip[first:first + count], count, w1_t[low:high], part)
    biases = b1[low:high]
    for j in range(count):
        row = hidden[first + j][low:high]
        for o in range(n):
            row[o] = max(part[j, o] + biases[o], 0.0)
    outputs = w2_t.shape[0]
    out = scratch[1][:LARGEST_GROUP * outputs].reshape(LARGEST_GROUP, outputs)
    _group_products(hidden[first:first + count], count, w2_t, out)
    for j in range(count):
        for o in range(outputs):
            logits[first + j, o] = out[j, o] + b2[o]


def _scratch(gated, h_weights_t, skip_weight_t, w1_t, w2_t):
    """The per-call work arrays of _group_column and _group_head, made once per kernel call
    (a row), not once per pixel-channel: five rows, each long enough for the largest group's
    widest vectors. Zeros: a window's padding is read (against zero weights) before anything
    is written there."""
    longest = max(gated.shape[1] // h_weights_t.shape[0], h_weights_t.shape[2],
                  skip_weight_t.shape[0], w1_t.shape[0], w2_t.shape[1])
    return np.zeros((5, LARGEST_GROUP * longest), gated.dtype)


def _window_products(x, start, step, count, n, weights_t, w_start, out):
    """out[j, o] += x[start + j * step:][:n] . weights_t[o, w_start:w_start + n] for the
    positions j < count and every output o: a product whose input rows overlap (a
    convolution's windows, read where they lie in a padded row, no copy made).

    Four positions and two outputs at a time: eight independent sums, each weight loaded
    once for four positions (measured alone: 25 GMAC/s for 28 positions x 192 inputs x 64
    outputs, against 19 for NumPy's BLAS on the copied windows, and against 13 for the
    horizontal stack's two-candidate products)."""
    n_out = out.shape[1]
    blocked = count - count % 4
    paired = n_out - n_out % 2
    # Indexed by loop counters only (slices taken first): an index that might be negative
    # gets a wrap-around check, which stops the loops' vectorisation (3 GMAC/s, not 25).
    for j in range(0, blocked, 4):
        s0 = start + j * step
        x0s, x1s = x[s0:s0 + n], x[s0 + step:s0 + step + n]
        x2s, x3s = x[s0 + 2 * step:s0 + 2 * step + n], x[s0 + 3 * step:s0 + 3 * step + n]
        for o in range(0, paired, 2):
            us, vs = weights_t[o, w_start:w_start + n], weights_t[o + 1, w_start:w_start + n]
            a0, a1, a2, a3 = out[j, o], out[j + 1, o], out[j + 2, o], out[j + 3, o]
            b0, b1, b2, b3 = out[j, o + 1], out[j + 1, o + 1], out[j + 2, o + 1], \
                out[j + 3, o + 1]
            for i in range(n):
                u, v = us[i], vs[i]
                x0, x1, x2, x3 = x0s[i], x1s[i], x2s[i], x3s[i]
                a0 += x0 * u
                a1 += x1 * u
                a2 += x2 * u
                a3 += x3 * u
                b0 += x0 * v
                b1 += x1 * v
                b2 += x2 * v
                b3 += x3 * v
            out[j, o], out[j + 1, o], out[j + 2, o], out[j + 3, o] = a0, a1, a2, a3
            out[j, o + 1], out[j + 1, o + 1], out[j + 2, o + 1], out[j + 3, o + 1] = \
                b0, b1, b2, b3
    for j in range(count):  # the positions left over, and for all, an odd last output
        xs = x[start + j * step:start + j * step + n]
        for o in range(paired if j < blocked else 0, n_out):
            us = weights_t[o, w_start:w_start + n]
            acc = out[j, o]
            for i in range(n):
                acc += xs[i] * us[i]
            out[j, o] = acc


def _two_row_products(x, start, gap, step, count, n, weights_t, w_start, out):
    """_window_products for two rows of a kernel at once: position j's windows start at
    start + j * step and `gap` further on, and meet weights_t[:, w_start:][:, :2n]. One sum
    per output over both (measured alone, a 3 x 3 kernel's two rows of 32 channels for 28
    positions and 64 outputs: 20 GMAC/s, against 16 for the rows one after the other: each
    sum's final reduction is paid once)."""
    n_out = out.shape[1]
    blocked = count - count % 4
    paired = n_out - n_out % 2
    for j in range(0, blocked, 4):
        s0, t0 = start + j * step, start + gap + j * step
        x0s, x1s = x[s0:s0 + n], x[s0 + step:s0 + step + n]
        x2s, x3s = x[s0 + 2 * step:s0 + 2 * step + n], x[s0 + 3 * step:s0 + 3 * step + n]
        y0s, y1s = x[t0:t0 + n], x[t0 + step:t0 + step + n]
        y2s, y3s = x[t0 + 2 * step:t0 + 2 * step + n], x[t0 + 3 * step:t0 + 3 * step + n]
        for o in range(0, paired, 2):
            us, vs = weights_t[o, w_start:w_start + n], weights_t[o + 1, w_start:w_start + n]
            u2s = weights_t[o, w_start + n:w_start + 2 * n]
            v2s = weights_t[o + 1, w_start + n:w_start + 2 * n]
            a0, a1, a2, a3 = out[j, o], out[j + 1, o], out[j + 2, o], out[j + 3, o]
            b0, b1, b2, b3 = out[j, o + 1], out[j + 1, o + 1], out[j + 2, o + 1], \
                out[j + 3, o + 1]
            for i in range(n):
                u, v, u2, v2 = us[i], vs[i], u2s[i], v2s[i]
                x0, x1, x2, x3 = x0s[i], x1s[i], x2s[i], x3s[i]
                y0, y1, y2, y3 = y0s[i], y1s[i], y2s[i], y3s[i]
                a0 += x0 * u + y0 * u2
                a1 += x1 * u + y1 * u2
                a2 += x2 * u + y2 * u2
                a3 += x3 * u + y3 * u2
                b0 += x0 * v + y0 * v2
                b1 += x1 * v + y1 * v2
                b2 += x2 * v + y2 * v2
                b3 += x3 * v + y3 * v2
            out[j, o], out[j + 1, o], out[j + 2, o], out[j + 3, o] = a0, a1, a2, a3
            out[j, o + 1], out[j + 1, o + 1], out[j + 2, o + 1], out[j + 3, o + 1] = \
                b0, b1, b2, b3
    for j in range(count):  # the positions left over, and for all, an odd last output
        xs = x[start + j * step:start + j * step + n]
        ys = x[start + gap + j * step:start + gap + j * step + n]
        for o in range(paired if j < blocked else 0, n_out):
            us = weights_t[o, w_start:w_start + n]
            u2s = weights_t[o, w_start + n:w_start + 2 * n]
            acc = out[j, o]
            for i in range(n):
                acc += xs[i] * us[i] + ys[i] * u2s[i]
            out[j, o] = acc


def _vertical_share(first, end, r0, r1, vin_all, khs, ks, cins, v_weights_t, v_biases,
                    links_t, h_biases, link_all, fast_tanh):
    """The vertical stack of finished rows r0 .. r1-1 for candidate states first .. end-1,
    and the link the last of them gives the row below it (GatedStepper._vertical's maths).

    Arrays arrive stacked per layer and flattened: vin_all (L, B, padded rows * padded
    columns * cin), each layer's input padded for its kh x k kernel (rows r .. r+kh-1 of
    layer i's are what output row r reads; layer i's gates go to layer i+1's); weights
    (L, 2w, longest window) ordered (kh, k, cin) as a padded row lays a window out; biases
    (L, 2w); links_t (L, 2w, 2w); link_all (L, B, W * 2w). As in the horizontal stack, the
    b half arrives halved: tanh(a) * (1 + tanh(b/2)) is twice the gate, and the next
    layer's weights carry the 1/2. Candidates are independent: shares of them may run on
    several threads at once."""
    layers = vin_all.shape[0]
    outputs = v_weights_t.shape[1]
    half = outputs // 2
    width = link_all.shape[2] // outputs
    pre = np.empty((width, outputs), vin_all.dtype)
    flat_pre = pre.reshape(-1)
    start = width - width  # 0, computed: a literal would make Numba compile another copy
    for b in range(first, end):
        for r in range(r0, r1):
            for layer in range(layers):
                k, cin = ks[layer], cins[layer]
                n = k * cin
                for c in range(width):
                    for o in range(outputs):
                        pre[c, o] = v_biases[layer, o]
                # Each kernel row's windows lie in one padded row: two such rows at a time.
                row_length = (width + k - 1) * cin
                kh = khs[layer]
                for dy in range(0, kh - 1, 2):
                    _two_row_products(vin_all[layer, b], (r + dy) * row_length, row_length, cin,
                                      width, n, v_weights_t[layer], dy * n, pre)
                if kh % 2:
                    _window_products(vin_all[layer, b], (r + kh - 1) * row_length, cin, width,
                                     n, v_weights_t[layer], (kh - 1) * n, pre)
                if layer + 1 < layers:
                    out = vin_all[layer + 1, b]
                    k_next = ks[layer + 1]
                    row_start = (r + khs[layer + 1] - 1) * (width + k_next - 1) + k_next // 2
                    for c in range(width):
                        gate = out[(row_start + c) * half:(row_start + c + 1) * half]
                        # Separate loops for the two tanh's: no branch per element.
                        if fast_tanh:
                            for o in range(half):
                                gate[o] = _fast_tanh(pre[c, o]) * (
                                    _ONE + _fast_tanh(pre[c, half + o]))
                        else:
                            for o in range(half):
                                gate[o] = math.tanh(pre[c, o]) * (
                                    1.0 + math.tanh(pre[c, half + o]))
                if r + 1 == r1:  # only the last finished row's link is needed: by the next
                    link = link_all[layer, b].reshape(width, outputs)
                    for c in range(width):
                        for o in range(outputs):
                            link[c, o] = h_biases[layer, o]
                    _window_products(flat_pre, start, outputs, width, outputs, links_t[layer],
                                     start, link)


def cache_report() -> str | None:
    """Where this process's kernels came from: loaded from Numba's on-disk cache, or compiled
    now (and whether they were saved for the next start). None before any kernel has run.

    The packaged app has no source files beside its modules; Numba then caches in the
    user's cache folder (e.g. ~/.cache/numba), keyed to the executable and (see
    _pin_source_path) the bundle's folder, so only the first start of a new build compiles."""
    if not AVAILABLE:
        return None
    stats = [kernel.stats for kernel in (sample_share, vertical_share)]
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


# fastmath lets the compiler reorder sums (the result moves by rounding only). NumPy's error
# model drops Python's check for a division by zero (a branch per division, which kept every
# loop with a division, such as the tanh fit's, scalar: the 9 x 28 gates of one vertical row
# took 93 us, 15 after).
_OPTIONS = dict(fastmath=True, error_model="numpy")


def _jit(function, **options):
    """`function` compiled, cached on disk where there is somewhere to write the cache."""
    _pin_source_path(function)
    options = {**_OPTIONS, "nogil": True, **options}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # no writable cache folder (e.g. a read-only install)
        return numba.njit(**options)(function)


if AVAILABLE:
    # The small helpers are inlined where they are used. The per-group functions are
    # compiled on their own: inlined into the kernels, they made Numba's compilation (the
    # first start of a new installation waits for it) about three times longer.
    _products, _pair_products, _fast_tanh = (
        numba.njit(inline="always", **_OPTIONS)(f)
        for f in (_products, _pair_products, _fast_tanh))
    _window_products, _two_row_products = (
        _jit(f) for f in (_window_products, _two_row_products))
    _scratch, _group_size = (numba.njit(inline="always", **_OPTIONS)(f)
                             for f in (_scratch, group_size))
    _group_products, _group_column, _group_head, _sample_share = (
        _jit(f) for f in (_group_products, _group_column, _group_head, _sample_share))
    # The distributions are computed as NumPy computes them: no fastmath here.
    _block_sum = numba.njit(inline="always", error_model="numpy")(_block_sum)
    _pairwise_sum, _probabilities, _draw, _draw_values = (
        _jit(f, fastmath=False) for f in (_pairwise_sum, _probabilities, _draw, _draw_values))
    # Per call, one share of the candidates: the row sampled, or the vertical stack of the
    # rows finished. Both compile on first use (seconds, then cached on disk).
    sample_share = _sample_share
    vertical_share = _jit(_vertical_share)
else:  # pragma: no cover
    sample_share = vertical_share = None
