"""Compiled kernels for the fast sampler on the CPU (Numba).

One pixel of the gated model is a few dozen products of vectors with small matrices. In
NumPy each is a separate call costing microseconds of overhead, far more than its
arithmetic; compiled, a whole row of pixels (every layer of each column, the head, the
distribution and the draw) is one call, and a finished row's vertical stack another.
Weights come as (inputs, outputs); the products keep outputs in vector lanes (tiles.py),
and what the kernels take is named in layout.py. fastmath lets the compiler reorder the
rest of the arithmetic; results move by rounding only. If Numba is not installed the
sampler falls back to NumPy (same results, slower).
"""

from __future__ import annotations

import math

import numpy as np

from .jit import _OPTIONS, AVAILABLE, _jit, numba
from .tiles import LARGEST_GROUP, _computed_zero, _group_size, _lanes

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


def _group_column(first, count, col, low, high, hin, cins, kws, h_weights, link_rows,
                  res_weights, res_biases, gated, fast_tanh, scratch):
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
    h_weights (L, longest window, 2w), link_rows (L, B, W * 2w), gated (B, L * w),
    res_weights (L, w, w). Same maths as GatedStepper.horizontal: the b half of the
    pre-activation arrives halved, so tanh(a) * (1 + tanh(b/2)) is twice the gate, and the
    consumers' weights carry the 1/2. `fast_tanh` (for float32) swaps libm's tanh for the
    rational fit above.

    `scratch` (room for LARGEST_GROUP x 2w values) is the caller's, made once per row
    rather than once per call.
    """
    layers, row_length = hin.shape[0], hin.shape[2]
    depth = gated.shape[1]  # every layer's gates of one candidate
    width = depth // layers
    n = high - low
    zero = _computed_zero(n)
    # Each candidate's pre-activations for low .. high-1: the a half, then the b half.
    pre = scratch[:LARGEST_GROUP * 2 * n].reshape(LARGEST_GROUP, 2 * n)
    flat_gated = gated.reshape(-1)
    # Computed indices are taken as slices first, and the loops index those by their counters
    # only: an index that may be negative gets a wrap-around check, which stops vectorisation.
    for layer in range(layers):
        cin = cins[layer]
        kw = kws[layer]
        offset = col * 2 * width
        for j in range(count):  # the link from the rows above, then the window's product
            link_a = link_rows[layer, first + j][offset + low:offset + high]
            link_b = link_rows[layer, first + j][offset + width + low:offset + width + high]
            for o in range(n):
                pre[j, o] = link_a[o]
                pre[j, n + o] = link_b[o]
        inputs = hin[layer].reshape(-1)
        _lanes(inputs, first * row_length + col * cin, row_length, count, kw * cin,
               h_weights[layer], zero, low, n, pre, zero, zero)
        _lanes(inputs, first * row_length + col * cin, row_length, count, kw * cin,
               h_weights[layer], zero, width + low, n, pre, zero, n)
        for j in range(count):
            gates = gated[first + j, layer * width + low:layer * width + high]
            # Separate loops for the two tanh's, so that the branch is not taken per element.
            if fast_tanh:
                for o in range(n):
                    gates[o] = _fast_tanh(pre[j, o]) * (_ONE + _fast_tanh(pre[j, n + o]))
            else:
                for o in range(n):
                    gates[o] = math.tanh(pre[j, o]) * (1.0 + math.tanh(pre[j, n + o]))
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
        centre = (col + kw - 1) * width + low
        biases = res_biases[layer, low:high]
        for j in range(count):  # the residual path and its bias, then the gate's product
            x = hin[layer, first + j][centre:centre + n]
            out = hin[layer + 1, first + j][base:base + n]
            for o in range(n):
                out[o] = x[o] + biases[o]
        # Group g's residual reads the whole gate (groups <= g), where it lies in `gated`.
        _lanes(flat_gated, first * depth + layer * width, depth, count, width,
               res_weights[layer], zero, low, n, hin[layer + 1], first, base)


def _sample_share(first, end, shared, row, col, channel, last_col, known_row, state, weights,
                  fast_tanh, drawing, values, probs):
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
    a share of them at once (model/fast/threads.py deals them out, one share per core)."""
    hin, link_rows, gated = state
    cins, kws, h_weights, res_weights, res_biases, skip_weight, skip_bias, w1, b1, w2, b2 = (
        weights)
    bernoulli, temperature, top_level, uniforms = drawing
    channels = w2.shape[0]
    logits = np.empty((gated.shape[0], w2.shape[2]), gated.dtype)
    first_input = kws[0] - 1  # hin[0]'s columns are padded on the left by kw - 1
    width = gated.shape[1] // hin.shape[0]
    group = width // channels  # hidden channels per colour group
    every = _computed_zero(group)
    scratch = np.empty(LARGEST_GROUP * 2 * width, gated.dtype)  # see _group_column
    skip = np.zeros((gated.shape[0], skip_weight.shape[1]), gated.dtype)
    hidden = np.zeros((gated.shape[0], w1.shape[1]), gated.dtype)
    drawn = 0
    for c in range(col, last_col + 1):
        if known_row[c]:  # its value is in hin[0] already: the stack, for the columns after
            g = first
            while g < end:
                count = _group_size(end - g)
                _group_column(g, count, c, every, width, hin, cins, kws, h_weights,
                              link_rows, res_weights, res_biases, gated, fast_tanh, scratch)
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
                              h_weights, link_rows, res_weights, res_biases, gated,
                              fast_tanh, scratch)
                _group_head(g, count, head_low, (ch + 1) * group, gated, skip_weight,
                            skip_bias, w1, b1, w2[ch], b2[ch], skip, hidden, logits)
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


def _group_head(first, count, low, high, gated, skip_weight, skip_bias, w1, b1, w2, b2, skip,
                hidden, logits):
    """One channel's logits from every layer's gate (the skip sum, then the head), for
    candidates first .. first + count - 1. Weights are (inputs, outputs).

    skip and hidden (B, w) hold each candidate's head activations at the current pixel. Of
    a colour model's, only this channel's colour group, rows low .. high-1, is computed: the
    groups before it read only earlier groups (mask B), which this channel's pass left as
    they were, so they are kept from the channels before (`low` is 0 where those are not
    there yet: a pixel's first channel, or a run that starts within a pixel). The rows from
    `high` on belong to later groups, which this channel's logits do not read (their
    weights are zero): what they hold (a previous pixel's values, finite) never reaches a
    result. Without colour groups low is 0 and high the width: every row."""
    n = high - low
    zero = _computed_zero(n)
    for target, source, weights, biases in ((skip, gated, skip_weight, skip_bias),
                                            (hidden, skip, w1, b1)):
        steps = source.shape[1]
        for j in range(count):  # the bias, then the product, then the ReLU
            row = target[first + j][low:high]  # (slices first: see _group_column)
            bias = biases[low:high]
            for o in range(n):
                row[o] = bias[o]
        _lanes(source.reshape(-1), first * steps, steps, count, steps, weights, zero, low, n,
               target, first, low)
        for j in range(count):
            row = target[first + j][low:high]
            for o in range(n):
                row[o] = max(row[o], 0.0)
    outputs = w2.shape[1]
    for j in range(count):
        for o in range(outputs):
            logits[first + j, o] = b2[o]
    steps = hidden.shape[1]
    _lanes(hidden.reshape(-1), first * steps, steps, count, steps, w2, zero, zero, outputs,
           logits, first, zero)


def _vertical_share(first, end, r0, r1, state, weights, fast_tanh):
    """The vertical stack of finished rows r0 .. r1-1 for candidate states first .. end-1,
    and the link the last of them gives the row below it (GatedStepper._vertical's maths).

    Arrays arrive stacked per layer and flattened: vin_all (L, B, padded rows * padded
    columns * cin), each layer's input padded for its kh x k kernel (rows r .. r+kh-1 of
    layer i's are what output row r reads; layer i's gates go to layer i+1's); weights
    (L, longest window, 2w), rows ordered (kh, k, cin) as a padded row lays a window out; biases
    (L, 2w); links (L, 2w, 2w); link_all (L, B, W * 2w). As in the horizontal stack, the
    b half arrives halved: tanh(a) * (1 + tanh(b/2)) is twice the gate, and the next
    layer's weights carry the 1/2. Candidates are independent: shares of them may run on
    several threads at once."""
    vin_all, link_all = state
    khs, ks, cins, v_weights, v_biases, links, h_biases = weights
    layers = vin_all.shape[0]
    outputs = v_weights.shape[2]
    half = outputs // 2
    width = link_all.shape[2] // outputs
    pre = np.empty((width, outputs), vin_all.dtype)
    flat_pre = pre.reshape(-1)
    start = _computed_zero(width)
    for b in range(first, end):
        for r in range(r0, r1):
            for layer in range(layers):
                k, cin = ks[layer], cins[layer]
                n = k * cin
                for c in range(width):
                    for o in range(outputs):
                        pre[c, o] = v_biases[layer, o]
                # Each kernel row's windows lie in one padded row, a window every cin.
                row_length = (width + k - 1) * cin
                for dy in range(khs[layer]):
                    _lanes(vin_all[layer, b], (r + dy) * row_length, cin, width, n,
                           v_weights[layer], dy * n, start, outputs, pre, start, start)
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
                    _lanes(flat_pre, start, outputs, width, outputs, links[layer], start,
                           start, outputs, link, start, start)


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


if AVAILABLE:
    # The small helpers are inlined where they are used. The per-group functions are
    # compiled on their own: inlined into the kernels, they made Numba's compilation (the
    # first start of a new installation waits for it) about three times longer.
    _fast_tanh = numba.njit(inline="always", **_OPTIONS)(_fast_tanh)
    _group_column, _group_head, _sample_share = (
        _jit(f) for f in (_group_column, _group_head, _sample_share))
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
