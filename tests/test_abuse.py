"""The completion runner under abuse: hundreds of starts and stops at every moment, and
completions back to back, leave no threads, no live workers and no memory behind."""

import gc
import os
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_model
from gui.completion_runner import CompletionRunner
from model import complete

STATM = Path("/proc/self/statm")
TASKS = Path("/proc/self/task")

pytestmark = pytest.mark.skipif(not STATM.exists(), reason="reads memory and threads from /proc")

# Resident memory may grow this much over the 250 runs measured below. The process holds
# PyTorch, Numba and Qt (over 400 MB) and the allocator keeps some freed memory, so a little
# growth is noise: about 0.9 MB here. The bound is what 80 kB left behind by every run adds
# up to (100 kB a run, tried, grew it by 25 MB): a lost thread with its stack, or a worker
# with its sampler and buffers. A lost worker of any size is caught by the weak references.
MEMORY_BOUND = 20 * 2**20


def resident_bytes() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def os_thread_count() -> int:
    return len(os.listdir(TASKS))


def quiesce(qtbot) -> None:
    """Let late queued signals arrive and let go of everything that can be let go of."""
    qtbot.wait(30)
    gc.collect()


class Runs:
    """Starts runs on one runner and checks each ends exactly once, with a prefix of the
    samples a plain completion with the same seed draws."""

    def __init__(self, qtbot, runner: CompletionRunner, model):
        self.qtbot, self.runner, self.model = qtbot, runner, model
        self.ended: list[tuple] = []
        self.started = 0
        self.workers: list[weakref.ref] = []
        self.threads: list = []  # QThread wrappers, kept to ask whether they have finished
        runner.finished.connect(lambda stopped: self.ended.append(("finished", stopped)))
        runner.failed.connect(lambda message: self.ended.append(("failed", message)))
        # (run, device) at each `started`: once per run at most, with its device known.
        self.announced: list[tuple[int, str | None]] = []
        runner.started.connect(lambda: self.announced.append((self.started,
                                                               runner.device_name)))
        self._expected: dict[tuple, np.ndarray] = {}

    def start(self, known, *, seed, candidates=1, **options) -> None:
        self.runner.start(self.model, np.zeros((1, *known.shape), np.uint8), known,
                          seed=seed, candidates=candidates, **options)
        self.started += 1
        self.workers.append(weakref.ref(self.runner.worker))
        self.threads.append(self.runner.worker_thread)

    def wait_until_ended(self) -> None:
        self.qtbot.waitUntil(lambda: len(self.ended) == self.started, timeout=10_000)

    def check_last(self, known, *, seed, candidates=1, rank_method=None) -> None:
        """The run that just ended: one outcome, and the images of the samples delivered."""
        assert len(self.ended) == self.started and self.ended[-1][0] == "finished"
        assert not self.runner.is_running() and self.threads[-1].isFinished()
        key = (known.tobytes(), seed, candidates)
        if key not in self._expected:
            self._expected[key] = complete(self.model, np.zeros((1, *known.shape), np.uint8),
                                           known, seed=seed, candidates=candidates).run()
        expected = self._expected[key].copy()
        # Samples arrive in raster order: the first done/(candidates) unknown pixels.
        rows, cols = np.nonzero(~known)
        pixels = self.runner.done // candidates
        expected[:, :, rows[pixels:], cols[pixels:]] = 0
        np.testing.assert_array_equal(self.runner.images, expected)
        assert (self.runner.ranked is not None) == (
            rank_method is not None and self.runner.done == self.runner.total)


def cycle(runs: Runs, i: int, known) -> None:
    """One start/stop cycle; `i` picks when and how it is stopped."""
    runner, qtbot = runs.runner, runs.qtbot
    seed, candidates = i % 3, 1 + i % 2
    way = i % 6
    runs.start(known, seed=seed, candidates=candidates,
               pixels_per_second=300 if way in (2, 3) else 0)
    if way == 0:  # before the thread has run at all
        assert runner.shutdown()
    elif way == 1:  # asked to stop at once, ending through the event loop
        runner.stop()
        runs.wait_until_ended()
    elif way == 2:  # mid-run, after some samples were shown
        qtbot.waitUntil(lambda: runner.done >= 2, timeout=10_000)
        runner.stop()
        runs.wait_until_ended()
    elif way == 3:  # shut down mid-run
        qtbot.waitUntil(lambda: runner.done >= 1, timeout=10_000)
        assert runner.shutdown()
    elif way == 4:  # shut down just after the worker started
        qtbot.waitUntil(lambda: runner.device_name is not None, timeout=10_000)
        assert runner.shutdown()
    else:  # to the end
        runs.wait_until_ended()
    runs.check_last(known, seed=seed, candidates=candidates)


def back_to_back(runs: Runs, count: int, known) -> None:
    """`count` completions, each started from the end of the one before."""
    done = []

    def next_run(*_):
        runs.check_last(known, seed=len(done), candidates=3, rank_method="best")
        done.append(True)
        if len(done) < count:
            runs.start(known, seed=len(done), candidates=3, rank_method="best")

    runs.runner.finished.connect(next_run)
    try:
        runs.start(known, seed=0, candidates=3, rank_method="best")
        runs.qtbot.waitUntil(lambda: len(done) == count, timeout=60_000)
    finally:
        runs.runner.finished.disconnect(next_run)


def python_made_threads() -> set:
    """Live threads started by Python. A QThread that runs Python code leaves a "dummy"
    entry behind that never goes away (Python cannot see a foreign thread end); those are
    checked as QThreads and by the process's thread count instead."""
    return {t for t in threading.enumerate()
            if t.is_alive() and not isinstance(t, threading._DummyThread)}


def test_hundreds_of_runs_leave_no_threads_workers_or_memory_behind(qtbot, one_thread):
    model = tiny_model()
    bottom = np.zeros((6, 7), bool)
    bottom[:2] = True  # 28 unknown pixels
    hole = np.ones((6, 7), bool)
    hole[2:4, 1:5] = False  # known pixels after the hole: worth ranking
    runner = CompletionRunner()
    runs = Runs(qtbot, runner, model)

    # Warm up: kernels compiled or loaded, thread pools (the sampler's helper threads among
    # them) and allocator arenas in place.
    for i in range(24):
        cycle(runs, i, bottom)
    back_to_back(runs, 5, hole)
    quiesce(qtbot)
    memory, os_threads = resident_bytes(), os_thread_count()
    python_threads = python_made_threads()
    warm_workers = len(runs.workers)

    for i in range(200):
        cycle(runs, i, bottom)
    back_to_back(runs, 50, hole)
    quiesce(qtbot)
    growth = resident_bytes() - memory

    assert runs.started == warm_workers + 250 == len(runs.ended)
    assert all(thread.isFinished() for thread in runs.threads)
    runs_announced = [run for run, _ in runs.announced]
    assert len(runs_announced) == len(set(runs_announced))
    assert {device for _, device in runs.announced} == {"CPU"}
    assert os_thread_count() <= os_threads
    assert python_made_threads() <= python_threads  # QThreads are counted above
    runs.threads.clear()
    gc.collect()
    assert [ref for ref in runs.workers if ref() is not None] == []
    assert growth < MEMORY_BOUND, f"resident memory grew {growth / 2**20:.1f} MB"
