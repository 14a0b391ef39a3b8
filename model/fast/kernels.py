"""Compiled kernels for the fast sampler on the CPU (Numba).

One pixel of the gated model is a few dozen products of vectors with small matrices. In
NumPy each is a separate call costing microseconds of overhead, far more than its
arithmetic; compiled, a whole row of pixels (every layer of each column, the head, the
distribution and the draw) is one call, and a finished row's vertical stack another.
Weights come as (inputs, outputs), and the products keep outputs in vector lanes (_lanes:
tiles written in LLVM's IR). fastmath lets the compiler reorder the rest of the arithmetic;
results move by rounding only. If Numba is not installed the sampler falls back to NumPy
(same results, slower).
"""

from __future__ import annotations

import math
import os
import sys
from typing import NamedTuple

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None
# PIXELCNN_PLAIN_TILES=1 computes the tiles' products with plain Numba loops instead of the
# LLVM IR below: the same sums, slower. For a Numba release whose internals the IR no longer
# fits, and as the specification the IR is tested against (tests/test_fast_sampler.py).
PLAIN_TILES = os.environ.get("PIXELCNN_PLAIN_TILES", "") not in ("", "0")


# Candidates are independent; the kernels take them in groups (one tile of rows) only to
# share weight loads. A fifth left over joins the group of four before it (9 candidates: 4
# and 5, not 4, 4 and 1): a horizontal layer's product for five costs 1.3 times that for
# four, and alone the fifth would cost half what the four do.
GROUP = 4
LARGEST_GROUP = GROUP + 1


# What the two kernels take, by name: Numba passes these tuples of arrays and numbers to
# compiled code as they are. Layouts: see _group_column (the row) and _vertical_share.
class RowState(NamedTuple):
    """The row kernel's per-candidate state, read and written."""
    hin: np.ndarray  # (L, B, padded columns * cin): each layer's input along the row
    link_rows: np.ndarray  # (L, B, W * 2w): what the rows above give each column
    gated: np.ndarray  # (B, L * w): every layer's gate at the current column


class RowWeights(NamedTuple):
    """The horizontal stack's and the head's weights, (inputs, outputs)."""
    cins: np.ndarray  # (L,) input channels of each layer
    kws: np.ndarray  # (L,) kernel width of each layer
    h_weights: np.ndarray  # (L, longest window, 2w)
    res_weights: np.ndarray  # (L, w, w)
    res_biases: np.ndarray  # (L, w)
    skip_weight: np.ndarray
    skip_bias: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray  # (C, hidden, K): one head output per image channel
    b2: np.ndarray


class Drawing(NamedTuple):
    """How values are drawn from the logits."""
    bernoulli: bool  # one logit (of level 1) per value, else K logits
    temperature: float
    top_level: int  # K - 1: a drawn value is written back as value / top_level
    uniforms: np.ndarray  # (B, C, H, W): each candidate's own stream


class VerticalState(NamedTuple):
    vin_all: np.ndarray  # (L, B, padded rows * padded columns * cin)
    link_all: np.ndarray  # (L, B, W * 2w): the link the last finished row gives the next


class VerticalWeights(NamedTuple):
    khs: np.ndarray  # (L,) kernel heights
    ks: np.ndarray  # (L,) kernel widths
    cins: np.ndarray  # (L,) input channels
    v_weights: np.ndarray  # (L, longest window, 2w), rows ordered (kh, k, cin)
    v_biases: np.ndarray  # (L, 2w)
    links: np.ndarray  # (L, 2w, 2w)
    h_biases: np.ndarray  # (L, 2w)


def computed_zero(n):
    """0, computed from an argument. Numba types a literal 0 apart from other integers, so a
    compiled function given a literal 0 where it is elsewhere given a variable (_lanes's
    offsets) is compiled once more, for that literal: every such 0 is made here instead."""
    return n - n


def group_size(left):
    """How many of the `left` candidates the next group takes."""
    return left if left == LARGEST_GROUP else min(GROUP, left)


# Products with the outputs in vector lanes. Every product here is a few rows of inputs (the
# candidates of a group, or a convolution's positions) times a small matrix of weights laid
# out (inputs, outputs). A tile holds a block of outputs for up to five rows in registers
# and walks the inputs once: per input, one vector of weights is loaded for all the rows
# and multiplied by each row's input broadcast to every lane, and no sum is ever reduced
# across lanes (dot products, one output at a time, did that for every output: a 96-long
# one was 6 vector multiply-adds and about 9 instructions of reduction). LLVM does not find
# this form in Numba's loops (tried: 2-7x slower), so the tiles are written in its IR, with
# vector types it lowers to what the machine has (AVX-512, AVX2, NEON).
def _vector_bytes():
    """The machine's widest vector registers: 64 bytes with AVX-512, else taken as 32 (a
    tile wider than the registers is split by LLVM, and spills some of them)."""
    try:
        from llvmlite import binding
        return 64 if binding.get_host_cpu_features().get("avx512f") else 32
    except Exception:  # pragma: no cover - no feature query on this platform
        return 32


VECTOR_BYTES = _vector_bytes() if AVAILABLE else 32


def _emit_tile(context, builder, rows, width, dtype, x, x_start, x_step, n, w, w_row, w_col,
               out, out_row, out_col):
    """IR for out[out_row + r, out_col:][:width] += the sum over i < n of
    x[x_start + r * x_step + i] * w[w_row + i, w_col:][:width], for every r < rows."""
    i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
    scalar = context.get_value_type(dtype)
    size = dtype.bitwidth // 8
    kind = "f32" if size == 4 else "f64"
    vector = scalar if width == 1 else ir.VectorType(scalar, width)
    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3),
        f"llvm.fmuladd.{kind}" if width == 1 else f"llvm.fmuladd.v{width}{kind}")

    def element(array, offset_bytes, of_type):
        start = builder.gep(builder.bitcast(array.data, i8p), [offset_bytes])
        return builder.bitcast(start, of_type.as_pointer())

    def constant(value):
        return ir.Constant(i64, value)

    x_stride, w_stride, out_stride = (builder.extract_value(a.strides, 0) for a in (x, w, out))
    sums, targets = [], []
    for r in range(rows):
        row_bytes = builder.mul(builder.add(out_row, constant(r)), out_stride)
        target = element(out, builder.add(row_bytes, builder.mul(out_col, constant(size))),
                         vector)
        total = cgutils.alloca_once(builder, vector)  # in registers once LLVM is done
        builder.store(builder.load(target, align=size), total)
        sums.append(total)
        targets.append(target)
    w_col_bytes = builder.mul(w_col, constant(size))
    broadcast = ir.Constant(ir.VectorType(i32, width), [0] * width) if width > 1 else None
    with cgutils.for_range(builder, n) as loop:
        i = loop.index
        w_bytes = builder.add(builder.mul(builder.add(w_row, i), w_stride), w_col_bytes)
        weights = builder.load(element(w, w_bytes, vector), align=size)
        for r in range(rows):
            index = builder.add(builder.add(x_start, builder.mul(x_step, constant(r))), i)
            value = builder.load(element(x, builder.mul(index, x_stride), scalar))
            if broadcast is not None:
                value = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                               ir.Constant(i32, 0))
                value = builder.shuffle_vector(value, ir.Constant(vector, ir.Undefined),
                                               broadcast)
            total = sums[r]
            builder.store(builder.call(fmuladd, [value, weights, builder.load(total)]), total)
    for total, target in zip(sums, targets, strict=True):
        builder.store(builder.load(total), target, align=size)


def widest_tile(itemsize):
    """How many outputs the widest tile holds: two vectors' worth."""
    return 2 * VECTOR_BYTES // itemsize


def _tile_widths(dtype):
    """The widths tiles come in: the widest, then halving down to one output (_lanes takes
    them in that order)."""
    widths, width = [], widest_tile(dtype.bitwidth // 8)
    while width:
        widths.append(width)
        width //= 2
    return widths


def _tile_typer(typingctx, rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row,
                out_col):
    """_tile(rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row, out_col):
    one tile of _lanes (see _emit_tile), `rows` from 1 to LARGEST_GROUP and `width` one of
    _tile_widths (any other pair raises ValueError; _lanes asks for no other). x is
    one-dimensional, w and out two-dimensional, all C-contiguous and of one float type."""
    arrays = (x, w, out)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) or (
            x.ndim, w.ndim, out.ndim) != (1, 2, 2) or len({a.dtype for a in arrays}) != 1 or (
            x.dtype not in (types.float32, types.float64)):
        return None  # Numba then reports that no _tile takes these types
    dtype = x.dtype
    signature = types.void(rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row,
                           out_col)

    def codegen(context, builder, signature, args):
        ints = {k: context.cast(builder, args[k], signature.args[k], types.int64)
                for k in (0, 1, 3, 4, 5, 7, 8, 10, 11)}
        x_a, w_a, out_a = (context.make_array(signature.args[k])(context, builder, args[k])
                           for k in (2, 6, 9))
        done = builder.append_basic_block("tile.done")
        unsupported = builder.append_basic_block("tile.unsupported")
        key = builder.add(builder.mul(ints[0], ir.Constant(ir.IntType(64), 1024)), ints[1])
        switch = builder.switch(key, unsupported)
        for rows_ in range(1, LARGEST_GROUP + 1):
            for width_ in _tile_widths(dtype):
                block = builder.append_basic_block(f"tile.{rows_}x{width_}")
                switch.add_case(ir.Constant(ir.IntType(64), rows_ * 1024 + width_), block)
                builder.position_at_end(block)
                _emit_tile(context, builder, rows_, width_, dtype, x_a, ints[3], ints[4],
                           ints[5], w_a, ints[7], ints[8], out_a, ints[10], ints[11])
                builder.branch(done)
        builder.position_at_end(unsupported)
        context.call_conv.return_user_exc(
            builder, ValueError, (f"_tile: rows must be 1..{LARGEST_GROUP} and width one of "
                                  f"{_tile_widths(dtype)}",))
        builder.position_at_end(done)
        return context.get_dummy_value()

    return signature, codegen


def _plain_tile(rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row, out_col):
    """What _tile computes, as plain loops: the specification the IR is tested against, and
    the tiles' implementation under PIXELCNN_PLAIN_TILES=1."""
    widest = _widest_tile(x.itemsize)
    if rows < 1 or rows > LARGEST_GROUP or width < 1 or width > widest or width & (width - 1):
        raise ValueError("_tile: unsupported rows x width")
    for r in range(rows):
        start = x_start + r * x_step
        for o in range(width):
            total = out[out_row + r, out_col + o]
            for i in range(n):
                total += x[start + i] * w[w_row + i, w_col + o]
            out[out_row + r, out_col + o] = total


def _lanes(x, x_start, x_step, count, n, w, w_row, w_col, n_cols, out, out_row, out_col):
    """out[out_row + j, out_col + o] += x[x_start + j * x_step:][:n] . w[w_row:][:n, w_col + o]
    for rows j < count and outputs o < n_cols. The rows may overlap (a convolution's windows,
    read where they lie in a padded row: no copy made). Tiles as group_size takes
    candidates (five rows at most; a longer product, four at a time), each as wide as the
    outputs left allow."""
    widest = _widest_tile(x.itemsize)
    o = 0
    while o < n_cols:
        width = widest
        while width > n_cols - o:
            width //= 2
        j = 0
        while j < count:
            rows = _group_size(count - j)
            _tile(rows, width, x, x_start + j * x_step, x_step, n, w, w_row, w_col + o, out,
                  out_row + j, out_col + o)
            j += rows
        o += width


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
    a share of them at once (model/fast.py does, one share per core)."""
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
        # Not cached with plain tiles: Numba's cache is keyed to the source, not to which
        # _tile a kernel calls, and would hand the other build to the next start.
        return numba.njit(cache=not PLAIN_TILES, **options)(function)
    except RuntimeError:  # no writable cache folder (e.g. a read-only install)
        return numba.njit(**options)(function)


if AVAILABLE:
    _widest_tile = numba.njit(inline="always", **_OPTIONS)(widest_tile)
    _ir_tile = intrinsic(_tile_typer)
    _plain_tile = numba.njit(**_OPTIONS)(_plain_tile)
    _tile = _plain_tile if PLAIN_TILES else _ir_tile
    # The small helpers are inlined where they are used. The per-group functions are
    # compiled on their own: inlined into the kernels, they made Numba's compilation (the
    # first start of a new installation waits for it) about three times longer.
    _fast_tanh, _group_size, _computed_zero = (
        numba.njit(inline="always", **_OPTIONS)(f)
        for f in (_fast_tanh, group_size, computed_zero))
    _lanes, _group_column, _group_head, _sample_share = (
        _jit(f) for f in (_lanes, _group_column, _group_head, _sample_share))
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
