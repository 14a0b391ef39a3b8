"""The fast sampler's threads: the compiled path's helper threads work at most one row past
the row streamed, a failure in a helper's share reaches the caller (and the helpers carry
on), candidates dealt out over several cores get one core's samples, and BLAS stays
single-threaded until the last of overlapping completions ends."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_fast_sampler import known_mask, problem

from model import complete
from model.fast import kernels
from model.fast import threads as fast_threads

ROOT = Path(__file__).resolve().parent.parent


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
