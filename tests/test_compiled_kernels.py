"""The compiled kernels (Numba) draw as model.distributions does, and their tiles add up as
NumPy does: the lane products for every tile shape, the LLVM IR tiles against the plain
loops, the plain tiles switched on drawing the same samples. The kernels compile where no
cache can be written, a second start loads what the first one compiled, a frozen app's
cache is named inside its bundle, and the warm-up runs every kernel a first completion
needs without holding up a completion asked for meanwhile."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from test_fast_sampler import known_mask, problem

try:
    import numba
except ImportError:  # the compiled backend is then absent and its tests skip
    numba = None

from conftest import tiny_model
from model import complete
from model.distributions import draw, probabilities
from model.fast import jit, kernels, tiles

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_the_compiled_kernels_turn_logits_into_values_as_numpy_does():
    """The compiled path draws inside the kernels; its distributions and draws are those of
    model.distributions (the reference's), so the two samplers draw alike."""
    rng = np.random.default_rng(0)
    for levels in (1, 2, 3, 8, 16, 129, 256, 1000):  # 1: bernoulli (the logit of 1)
        for temperature in (0.0, 0.3, 1.0, 2.5):
            logits = rng.normal(0, 4, (40, levels)).astype(np.float32)
            logits[0] = logits[0, 0]  # a tie: greedy takes the first
            distribution = "bernoulli" if levels == 1 else "categorical"
            expected = probabilities(logits[:, 0] if levels == 1 else logits, distribution,
                                     temperature)
            got = np.empty_like(expected)
            for row, out in zip(logits, got, strict=True):
                kernels._probabilities(row, levels == 1, temperature, out)
            # Equal but for libm's exp and tanh against NumPy's (a unit in the last place).
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
            uniforms = rng.random(40)
            assert [kernels._draw(p, u) for p, u in zip(expected, uniforms, strict=True)] \
                == draw(expected, uniforms).tolist()
    for size in (1, 7, 8, 9, 128, 129, 300, 1001):  # NumPy's order of addition, exactly
        values = np.exp(rng.normal(0, 3, size))
        assert kernels._pairwise_sum(values) == values.sum()


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_the_lane_products_are_numpys_products_for_every_tile_shape(
        monkeypatch, dtype, vector_bytes):
    """tiles._lanes adds rows of inputs (here overlapping windows of one padded row, as the
    vertical stack reads them) times a block of a weight matrix into a block of its output,
    in tiles of 1 to 5 rows and 1 to 2 vectors of outputs: every count of rows and of
    outputs, offsets everywhere, and nothing outside the block touched. Both vector sizes
    are compiled here, whichever this machine has: AVX2 machines get the 32-byte tiles."""
    monkeypatch.setattr(tiles, "VECTOR_BYTES", vector_bytes)
    lanes = numba.njit(tiles._lanes.py_func)  # compiled anew, with this vector size
    rng = np.random.default_rng(0)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    for count in (1, 2, 3, 4, 5, 6, 9, 24):
        for n_cols in (1, 3, 8, 16, 17, 31, 33, 47, 96):
            n, step, x_start, w_row, w_col, out_row, out_col = 20, 3, 5, 2, 4, 1, 3
            x = rng.standard_normal(x_start + step * count + n).astype(dtype)
            w = rng.standard_normal((w_row + n + 3, w_col + n_cols + 5)).astype(dtype)
            out = rng.standard_normal((out_row + count + 2, out_col + n_cols + 4)).astype(dtype)
            windows = np.stack([x[x_start + j * step:][:n] for j in range(count)])
            expected = out.copy()
            expected[out_row:out_row + count, out_col:out_col + n_cols] += (
                windows.astype(np.float64) @ w[w_row:w_row + n, w_col:w_col + n_cols])
            lanes(x, x_start, step, count, n, w, w_row, w_col, n_cols, out, out_row, out_col)
            np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    # The widest tile is two vectors of this size, and none wider was made.
    code = "".join(lanes.inspect_llvm().values())
    widest = 2 * vector_bytes // np.dtype(dtype).itemsize
    element = "float" if dtype == np.float32 else "double"
    assert f"<{widest} x {element}>" in code and f"<{2 * widest} x {element}>" not in code


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_ir_tiles_compute_what_the_plain_loops_compute(dtype):
    """Every tile shape _lanes asks for, written in LLVM IR, against the plain-loop tile
    (PIXELCNN_PLAIN_TILES=1) on the same inputs; any other shape raises in both."""
    ir_tile, plain_tile = tiles._ir_tile, tiles._plain_tile

    @numba.njit
    def by_ir(rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row, out_col):
        ir_tile(rows, width, x, x_start, x_step, n, w, w_row, w_col, out, out_row, out_col)

    rng = np.random.default_rng(1)
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    n, step, x_start, w_row, w_col, out_row, out_col = 37, 2, 3, 1, 2, 1, 1
    widths = tiles._tile_widths(numba.from_dtype(np.dtype(dtype)))
    for rows in range(1, tiles.LARGEST_GROUP + 1):
        for width in widths:
            x = rng.standard_normal(x_start + step * rows + n).astype(dtype)
            w = rng.standard_normal((w_row + n, w_col + width + 2)).astype(dtype)
            out = rng.standard_normal((out_row + rows + 1, out_col + width + 2)).astype(dtype)
            ir_out, plain_out = out.copy(), out.copy()
            by_ir(rows, width, x, x_start, step, n, w, w_row, w_col, ir_out, out_row, out_col)
            plain_tile(rows, width, x, x_start, step, n, w, w_row, w_col, plain_out, out_row,
                       out_col)
            assert not np.array_equal(plain_out, out)
            np.testing.assert_allclose(ir_out, plain_out, rtol=tolerance, atol=tolerance)
    x, w, out = np.ones(8, dtype), np.ones((8, 8), dtype), np.zeros((8, 8), dtype)
    for rows, width in ((tiles.LARGEST_GROUP + 1, 1), (1, 3), (0, 1)):
        for tile in (by_ir, plain_tile):
            with pytest.raises(ValueError, match="_tile"):
                tile(rows, width, x, 0, 1, 2, w, 0, 0, out, 0, 0)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.slow
def test_plain_tiles_switched_on_draw_the_same_samples(tmp_path):
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from conftest import tiny_model\n"
            "from model import complete\n"
            "from model.fast import tiles\n"
            "import numpy as np\n"
            "assert tiles._tile is tiles._plain_tile\n"
            "model = tiny_model(channels=3, distribution='categorical')\n"
            "image = np.zeros((3, 6, 7), np.uint8)\n"
            "done = complete(model, image, np.zeros((6, 7), bool), candidates=3, seed=4,"
            " backend='compiled').run()\n"
            "np.save(sys.argv[1], done)\n")
    env = {**os.environ, "PIXELCNN_PLAIN_TILES": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "plain.npy")], check=True,
                   cwd=ROOT, env=env, timeout=600)
    model = tiny_model(channels=3, distribution="categorical")
    image = np.zeros((3, 6, 7), np.uint8)
    by_ir = complete(model, image, np.zeros((6, 7), bool), candidates=3, seed=4,
                     backend="compiled").run()
    assert np.array_equal(np.load(tmp_path / "plain.npy"), by_ir)


def _twice(x):
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = 2 * x[i]
    return out


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_kernels_still_compile_where_no_cache_can_be_written(monkeypatch):
    from numba.core import caching

    # As in a frozen app or a read-only install: Numba finds nowhere to keep its cache.
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(_twice)
    numbers = np.arange(5.0)
    np.testing.assert_array_equal(jit._jit(_twice)(numbers), 2 * numbers)


KERNELS_AT_START = """
import sys
sys.path.insert(0, "tests")
from conftest import tiny_model
from model import complete, fast
from model.fast import kernels
for options in ({}, dict(channels=3, distribution="categorical")):
    model = tiny_model(height=4, width=5, **options)
    fast.warm_up(model)
    complete(model, [[[0] * 5] * 4] * model.config.channels, [[False] * 5] * 4).run()
print(kernels.cache_report())
"""


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.slow
def test_a_second_start_loads_the_kernels_the_first_one_compiled(tmp_path):
    """What spares the packaged app its ~15 s of compiling at every start after the first
    (CI checks the bundle itself the same way: it starts it twice)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def start() -> str:
        result = subprocess.run([sys.executable, "-c", KERNELS_AT_START], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()[-1]

    first, second = start(), start()
    assert first.startswith("compiled at this start ("), first
    assert f"saved in {tmp_path}" in first
    assert second.startswith(f"loaded from the on-disk cache in {tmp_path}"), second


def test_a_frozen_apps_kernels_name_their_source_inside_the_bundle(monkeypatch, tmp_path):
    """A bundle's functions name their file relative to the folder the app started from;
    Numba's cache folder is named after that path, so each starting folder would compile
    again. The kernels pin it to the bundle (CI starts the bundle from two folders)."""
    def kernel(x):
        return x

    kernel.__code__ = kernel.__code__.replace(co_filename=os.path.join("model", "kernels.py"))
    jit._pin_source_path(kernel)  # in the source tree: left as it is
    assert kernel.__code__.co_filename == os.path.join("model", "kernels.py")

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    jit._pin_source_path(kernel)
    assert kernel.__code__.co_filename == str(tmp_path / "model" / "kernels.py")
    assert kernel(3) == 3


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_warm_up_runs_each_kernel_the_first_completion_needs(monkeypatch):
    from model import fast

    kernel_names = ("sample_share", "vertical_share")
    called = set()
    for name in kernel_names:
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _name=name, _kernel=original:
                            called.add(_name) or _kernel(*a))
    fast.warm_up(tiny_model(height=4, width=5))
    assert called == set(kernel_names)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_a_completion_started_while_the_kernels_warm_up_runs_on_numpy_without_waiting(
        monkeypatch):
    """At a new installation's first start the warm-up compiles for 10-20 s; a completion
    asked for meanwhile must not wait for it."""
    from model import fast

    warming, release = threading.Event(), threading.Event()
    kernel_threads = []
    original = kernels.sample_share

    def sample_share(*args):  # "compiling" until released: every caller waits, as on Numba's
        kernel_threads.append(threading.current_thread().name)  # compiler lock
        if threading.current_thread().name == "warm-up":
            warming.set()
        release.wait(30)
        return original(*args)

    monkeypatch.setattr(kernels, "sample_share", sample_share)
    model, image = problem(channels=3, distribution="categorical")
    known = known_mask("bottom-half", 6, 7)
    warm_up = threading.Thread(target=fast.warm_up, args=(model,), name="warm-up")
    warm_up.start()
    try:
        assert warming.wait(30)
        during = complete(model, image, known, seed=5, candidates=2).run()
        this_thread = threading.current_thread().name
        assert this_thread not in kernel_threads  # NumPy did this one
    finally:
        release.set()
        warm_up.join(30)
    after = complete(model, image, known, seed=5, candidates=2).run()
    assert this_thread in kernel_threads  # the kernels, once warm
    assert np.array_equal(during, after)
