"""Compiling with Numba: whether it is there, the options every kernel shares, and caching
the compiled code on disk (also in a frozen app)."""

from __future__ import annotations

import os
import sys

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None
# PIXELCNN_PLAIN_TILES=1 computes the tiles' products with plain Numba loops instead of the
# LLVM IR of tiles.py: the same sums, slower. For a Numba release whose internals the IR no longer
# fits, and as the specification the IR is tested against (tests/test_compiled_kernels.py).
PLAIN_TILES = os.environ.get("PIXELCNN_PLAIN_TILES", "") not in ("", "0")


def _pin_source_path(function) -> None:
    """In a frozen app a module's functions name their file relative to the folder the app
    was started from ("model/fast/kernels.py"), and Numba names its cache folder after that path
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
