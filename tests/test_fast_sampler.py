"""The fast sampler must compute the reference sampler's distributions, hence its samples."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import numba
except ImportError:  # the compiled backend is then absent and its tests skip
    numba = None

from conftest import tiny_model
from model import complete
from model.distributions import draw, probabilities
from model.fast import BACKENDS, jit, kernels, tiles
from model.fast import rows as fast_rows
from model.fast import threads as fast_threads

ROOT = Path(__file__).resolve().parent.parent

MASKS = ("hole", "bottom-half", "scattered", "nothing-known", "everything-known")
GATED_BACKENDS = [b for b in BACKENDS if b != "compiled" or kernels.AVAILABLE]


def known_mask(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    known = np.ones((height, width), bool)
    if kind == "hole":
        known[height // 4:height - 1, width // 4:width - 1] = False
    elif kind == "bottom-half":
        known[height // 2:] = False
    elif kind == "scattered":
        known = np.random.default_rng(seed).random((height, width)) < 0.5
    elif kind == "nothing-known":
        known[:] = False
    return known


def problem(seed=0, **model_options):
    model = tiny_model(seed, **model_options)
    cfg = model.config
    image = np.random.default_rng(seed).integers(
        0, cfg.levels, (cfg.channels, cfg.height, cfg.width))
    return model, image


def variants():
    """Architectures x colours x masks, each with its own size, temperature, class, batch."""
    rng = np.random.default_rng(7)
    for arch in ("gated", "pixelcnn"):
        for colours, distribution in ((1, "bernoulli"), (3, "categorical")):
            for kind in MASKS:
                height, width = [(5, 9), (8, 5), (7, 7), (6, 11)][rng.integers(4)]
                yield pytest.param(
                    dict(architecture=arch, channels=colours, distribution=distribution,
                         height=height, width=width, num_classes=3,
                         first_kernel_size=int(rng.choice([3, 5, 7])), layers=3),
                    kind,
                    dict(temperature=float(rng.choice([0.0, 0.7, 1.0, 1.6])),
                         candidates=int(rng.integers(1, 4)),
                         class_label=[None, 0, 2][rng.integers(3)]),
                    id=f"{arch}-C{colours}-{kind}-{height}x{width}",
                )


def backends_for(options):
    return GATED_BACKENDS if options["architecture"] == "gated" else [None]


@pytest.mark.parametrize(("model_options", "kind", "options"), list(variants()))
def test_fast_distributions_match_the_reference_given_the_same_images(
        model_options, kind, options):
    model, image = problem(**model_options)
    cfg = model.config
    known = known_mask(kind, cfg.height, cfg.width)
    for backend in backends_for(model_options):
        extra = {} if backend is None else {"backend": backend}
        completion = complete(model, image, known, seed=3, **options, **extra)
        samples = list(completion)
        assert len(samples) == completion.total == (~known).sum() * cfg.channels * options[
            "candidates"]
        # Teacher forcing: the model is causal, so one pass over the finished images gives
        # every distribution the reference sampler would have drawn from.
        labels = None if options["class_label"] is None else torch.tensor(
            [options["class_label"]] * options["candidates"])
        with torch.no_grad():
            logits = model(torch.from_numpy(completion.images).long(), labels).double()
        for s in samples:
            at = logits[s.candidate, s.channel, ..., s.row, s.col].numpy().reshape(1, -1)
            if cfg.distribution == "bernoulli":  # the logit of 1; 0 has logit 0
                at = np.concatenate([np.zeros((1, 1)), at], axis=1)
            if options["temperature"] == 0:
                # Greedy: the value picked is the best one, up to float32 rounding on a tie.
                assert s.probs[s.value] == 1.0
                assert at[0, s.value] >= at.max() - 1e-5
            else:
                expected = probabilities(at, "categorical", options["temperature"])[0]
                np.testing.assert_allclose(s.probs, expected, atol=1e-5, err_msg=str(backend))
        assert (completion.images[:, :, known] == image[:, known]).all()


@pytest.mark.parametrize(("model_options", "kind", "options"), list(variants()))
def test_in_float64_both_samplers_give_identical_samples(model_options, kind, options):
    model, image = problem(**model_options)
    model = model.double()
    cfg = model.config
    known = known_mask(kind, cfg.height, cfg.width, seed=1)
    reference = complete(model, image, known, sampler="reference", seed=9, **options)
    expected = list(reference)
    for backend in backends_for(model_options):
        extra = {} if backend is None else {"backend": backend}
        fast = complete(model, image, known, sampler="fast", seed=9, **options, **extra)
        got = list(fast)
        assert [s[:5] for s in got] == [s[:5] for s in expected], backend
        assert np.array_equal(fast.images, reference.images)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-12)


def test_a_fully_known_prefix_costs_one_batched_pass_not_one_per_pixel(monkeypatch):
    from model.fast.stepper import GatedStepper

    model, image = problem(height=10, width=6)
    known = known_mask("bottom-half", 10, 6)
    calls = []
    original = GatedStepper._vertical
    monkeypatch.setattr(GatedStepper, "_vertical",
                        lambda self, r0, r1, *chunk: calls.append((r0, r1))
                        or original(self, r0, r1, *chunk))
    completion = complete(model, image, known)
    next(completion)
    assert calls == [(0, 5)]  # the five known rows, together


def column_batches(monkeypatch) -> list[int]:
    """For each value the gated stepper computed, how many candidate states it ran on.
    (The NumPy and torch backends compute a column per value; the compiled one samples a
    row's values per call, fewer when the candidates split on the way, and once each has
    its own state a row per job.)"""
    from model.fast.stepper import GatedStepper, RowJob

    batches = []
    original = GatedStepper.column_logits
    monkeypatch.setattr(GatedStepper, "column_logits", lambda self, col, ch:
                        batches.append(self.batch) or original(self, col, ch))
    original_run = GatedStepper.sample_run

    def sample_run(self, *args):
        batch = self.batch  # a split after the run gives the next run more states
        values, probs, drawn = original_run(self, *args)
        batches.extend([batch] * drawn)
        return values, probs, drawn

    monkeypatch.setattr(GatedStepper, "sample_run", sample_run)
    original_job = RowJob.__call__

    def row_job(self, first, end):  # a whole row, once every candidate has its own state
        if first == 0:  # (its first share)
            unknown = int((~self.stepper.known[self.row]).sum())
            batches.extend([self.stepper.batch] * unknown * self.stepper.shape[1])
        return original_job(self, first, end)

    monkeypatch.setattr(RowJob, "__call__", row_job)
    return batches


@pytest.mark.parametrize("backend", GATED_BACKENDS)
def test_candidates_share_one_computation_until_their_samples_differ(monkeypatch, backend):
    batches = column_batches(monkeypatch)
    model, image = problem(height=6, width=7)
    known = known_mask("bottom-half", 6, 7)
    completion = complete(model, image, known, candidates=4, seed=5, backend=backend)
    list(completion)
    unknown = completion.images[:, 0, ~known]  # (candidates, pixels) in raster order
    split = np.nonzero((unknown != unknown[0]).any(axis=0))[0][0]
    assert split > 0  # this seed's candidates agree on their first pixels
    # One state up to the first pixel drawn differently, then one per candidate.
    assert batches == [1] * (split + 1) + [4] * (unknown.shape[1] - split - 1)


def test_greedy_candidates_never_split(monkeypatch):
    batches = column_batches(monkeypatch)
    model, image = problem()
    completion = complete(model, image, known_mask("hole", 6, 7), candidates=5,
                          temperature=0)
    list(completion)
    assert set(batches) == {1}
    assert (completion.images == completion.images[0]).all()


@pytest.mark.parametrize("backend", GATED_BACKENDS)
def test_stopping_the_fast_stream_stops_the_work(monkeypatch, backend):
    computed = column_batches(monkeypatch)
    model, image = problem()
    completion = complete(model, image, known_mask("nothing-known", 6, 7), backend=backend)
    next(completion), next(completion)
    images = completion.images.copy()
    completion.close()
    assert list(completion) == []
    # The two values streamed; the compiled kernels sample a row per call: its 7 values.
    assert len(computed) == (7 if backend == "compiled" else 2)
    # What was computed but not streamed is not in the images either.
    assert (images[0, 0, 0, 2:] == 0).all() and (images[0, 0, 1:] == 0).all()


def shares_computed(monkeypatch) -> list[tuple[int, str]]:
    """(row, thread name) for each share of a whole-row job the compiled path ran."""
    from model.fast.stepper import RowJob

    runs = []
    original = RowJob.__call__
    monkeypatch.setattr(RowJob, "__call__", lambda self, first, end: runs.append(
        (self.row, threading.current_thread().name)) or original(self, first, end))
    return runs


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_the_threads_work_at_most_one_row_past_the_row_streamed(monkeypatch):

    monkeypatch.setattr(fast_threads, "cores", lambda: 2)
    runs = shares_computed(monkeypatch)
    model, image = problem(channels=3, distribution="categorical", height=8, width=5)
    completion = complete(model, image, known_mask("nothing-known", 8, 5), candidates=4,
                          seed=1)
    per_row = 5 * 3 * 4  # columns x channels x candidates
    for _ in range(4 * per_row + per_row // 2):  # rows 0-3 and half of row 4
        sample = next(completion)
    assert sample.row == 4
    time.sleep(0.3)  # a slow consumer: the helper threads go as far as they may
    images = completion.images.copy()
    completion.close()
    assert {thread for _, thread in runs} - {threading.current_thread().name}  # helpers
    assert max(row for row, _ in runs) == 5  # one row past the row streamed, no further
    assert (images[:, :, 5:] == 0).all()  # and none of it is in the images
    assert list(completion) == []


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_a_failure_in_a_helper_threads_share_reaches_the_caller(monkeypatch):
    from model.fast.stepper import RowJob

    monkeypatch.setattr(fast_threads, "cores", lambda: 2)
    model, image = problem(height=6, width=7)
    known = known_mask("nothing-known", 6, 7)
    expected = complete(model, image, known, candidates=4, seed=3).run()
    original = RowJob.__call__

    def fail_on_a_helper(self, first, end):
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.01)  # so that the helper surely takes some of the rows' chunks
            return original(self, first, end)
        raise MemoryError("helper share")

    monkeypatch.setattr(RowJob, "__call__", fail_on_a_helper)
    completion = complete(model, image, known, candidates=4, seed=3)
    streamed = []
    with pytest.raises(MemoryError, match="helper share"):
        for sample in completion:
            streamed.append(sample)
    # Nothing but what was streamed reached the images.
    images = np.zeros_like(completion.images)
    for s in streamed:
        images[s.candidate, s.channel, s.row, s.col] = s.value
    assert np.array_equal(completion.images, images)
    # The helper threads carry on with the next completion.
    monkeypatch.setattr(RowJob, "__call__", original)
    assert np.array_equal(complete(model, image, known, candidates=4, seed=3).run(), expected)


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


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_candidates_dealt_out_over_several_cores_get_one_cores_samples(monkeypatch):

    model, image = problem(channels=3, distribution="categorical")
    known = known_mask("hole", 6, 7)
    monkeypatch.setattr(fast_threads, "cores", lambda: 1)
    alone = complete(model, image, known, candidates=5, seed=2).run()

    threads = set()
    kernel = kernels.sample_share
    monkeypatch.setattr(kernels, "sample_share", lambda *args: threads.add(
        threading.current_thread().name) or kernel(*args))
    monkeypatch.setattr(fast_threads, "cores", lambda: 3)
    monkeypatch.setattr(fast_threads, "_helpers", None)  # helper threads for three cores
    assert np.array_equal(complete(model, image, known, candidates=5, seed=2).run(), alone)
    assert threading.current_thread().name in threads and len(threads) >= 2


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("channels, distribution", [(1, "bernoulli"), (3, "categorical")])
@pytest.mark.parametrize("candidates", [5, 6])
def test_candidates_taken_in_groups_draw_the_reference_samples(
        monkeypatch, channels, distribution, candidates):

    # On one core the kernels take 5 candidates as one group of five (each weight loaded
    # once for the five), and 6 as four and two.
    monkeypatch.setattr(fast_threads, "cores", lambda: 1)
    chunks = [fast_rows._chunks(n) for n in (5, 6, 9)]
    assert chunks == [[(0, 5)], [(0, 4), (4, 6)], [(0, 4), (4, 9)]]
    model, image = problem(3, channels=channels, distribution=distribution, height=6, width=7,
                           num_classes=2)
    model = model.double()
    known = known_mask("bottom-half", 6, 7)
    options = dict(candidates=candidates, seed=4, temperature=1.3, class_label=1)
    reference = complete(model, image, known, sampler="reference", **options)
    expected = list(reference)
    got = list(complete(model, image, known, backend="compiled", **options))
    assert [s[:5] for s in got] == [s[:5] for s in expected]
    assert len({s.value for s in got}) > 1  # not a trivial all-alike completion
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-12)


def test_unknown_backend_is_rejected():
    model, image = problem()
    with pytest.raises(ValueError, match="Unknown backend 'fortran'"):
        complete(model, image, None, backend="fortran")


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


# In a process of its own: a window's background warm-up or a worker finishing in another
# test would be one more completion holding the limit.
OVERLAPPING_COMPLETIONS = """
from threadpoolctl import threadpool_info, threadpool_limits
from model.fast.threads import single_threaded_blas

def blas_threads():
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

with threadpool_limits(limits=2, user_api="blas"):  # as on a machine with two cores
    first, second = single_threaded_blas(), single_threaded_blas()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first completion ends, the other runs on
    assert blas_threads() == 1, "BLAS got its threads back while a completion ran"
    second.__exit__(None, None, None)
    assert blas_threads() == 2, "BLAS was left single-threaded"
"""


@pytest.mark.slow
def test_blas_stays_single_threaded_until_the_last_overlapping_completion_ends():
    pytest.importorskip("threadpoolctl")
    result = subprocess.run([sys.executable, "-c", OVERLAPPING_COMPLETIONS],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


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
