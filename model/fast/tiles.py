"""Products with the outputs in vector lanes: the arithmetic under every kernel, a few rows of
inputs times a small weight matrix, in tiles written in LLVM's IR (or plain loops with
PIXELCNN_PLAIN_TILES=1)."""

from __future__ import annotations

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

from .jit import _OPTIONS, AVAILABLE, PLAIN_TILES, _jit

# Candidates are independent; the kernels take them in groups (one tile of rows) only to
# share weight loads. A fifth left over joins the group of four before it (9 candidates: 4
# and 5, not 4, 4 and 1): a horizontal layer's product for five costs 1.3 times that for
# four, and alone the fifth would cost half what the four do.
GROUP = 4
LARGEST_GROUP = GROUP + 1


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


if AVAILABLE:
    _widest_tile = numba.njit(inline="always", **_OPTIONS)(widest_tile)
    _ir_tile = intrinsic(_tile_typer)
    _plain_tile = numba.njit(**_OPTIONS)(_plain_tile)
    _tile = _plain_tile if PLAIN_TILES else _ir_tile
    _group_size, _computed_zero = (numba.njit(inline="always", **_OPTIONS)(f)
                                   for f in (group_size, computed_zero))
    _lanes = _jit(_lanes)
