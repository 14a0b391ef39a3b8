"""Running on every core: candidates dealt out in shares, one per core, helper threads, and
NumPy's BLAS kept to one thread while a completion runs."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its threads
    ThreadpoolController = None


# Completions running at once (the app's worker and the kernel warm-up, say) share one BLAS
# limit: the first to start sets it, the last to finish lifts it.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_controller = None


@contextlib.contextmanager
def single_threaded_blas():
    """A context in which NumPy's BLAS runs on the calling thread only.

    The NumPy path's row products (the vertical stack's, and a row's known start) are
    small. Given its threads, OpenBLAS splits them and leaves its helper threads spinning
    after each product, and they take the cores from whatever runs between products.
    Measured on this project's 2-core machine when the compiled path still ran its vertical
    stack in BLAS: a 24x24 RGB completion took 0.7-1.0 s with them and 0.17 s without; 9
    candidates of a 28x28 digit 2.6 s with them and 0.2 s without. One thread loses little:
    these products run at 78 GFLOP/s on one thread and 84 on two. (The compiled path now
    calls no BLAS.)
    """
    global _blas_users, _blas_limiter, _blas_controller
    with _blas_lock:
        if _blas_users == 0 and ThreadpoolController is not None:
            _blas_controller = _blas_controller or ThreadpoolController()  # scans libraries
            _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def cores() -> int:
    """How many cores this process may run on: the candidates are dealt out over them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Threads that run shares of the candidates beside the calling thread, made on first use.
_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _share_bounds(batch: int) -> list[tuple[int, int]]:
    """Candidates 0 .. batch-1 dealt out in nearly equal shares, one per core (9 on two
    cores: 4 and 5; the calling thread takes the first)."""
    shares = min(batch, cores())
    return [(k * batch // shares, (k + 1) * batch // shares) for k in range(shares)]


def _helper_threads() -> ThreadPoolExecutor:
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(cores() - 1, thread_name_prefix="pixelcnn-share")
    return _helpers


def _in_shares(kernel, batch: int, *args):
    """kernel(first, end, *args) for candidate states first .. end-1 of `batch`, one share
    per core, run on the calling thread and helper threads at once (the kernels release the
    GIL): one handoff per call. (Numba's parallel build did the same 5-10% faster, but it
    compiled for 10 s more at a new installation's first start, and its fallback threading
    layer aborts the process if two threads start parallel kernels at once.) Returns the
    calling thread's share's result (a row's shares stop at the same value: they never
    share a state)."""
    mine, *others = _share_bounds(batch)
    if not others:
        return kernel(*mine, *args)
    running = [_helper_threads().submit(kernel, *share, *args) for share in others]
    try:
        return kernel(*mine, *args)
    finally:  # the rows' arrays must not change under a helper still at work
        for other in running:
            other.result()
