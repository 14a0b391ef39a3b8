"""`main.py --self-test`: does this installation (source tree or frozen bundle) work?

It loads every bundled model and completes the bottom half of its sample picture (a digit,
or a smiley for a colour model) with each (fast sampler, fixed seed, two candidates),
checking that no known pixel changed and that every unknown one was sampled to a valid
level; says whether the compiled kernels came from Numba's on-disk cache or were compiled at
this start; then it shows the main window, puts a completion on the canvas and grabs it.
Each check prints one line. The last line is `self-test OK` (exit 0), or the failures are
printed to stderr, each naming what failed (exit 1).

Nothing here writes the user's settings: the window is hidden again, never closed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from model import complete, load_model
from model.fast import kernels
from model.registry import MODELS_DIR, bundled_models, sample_picture

from .image_io import load_image
from .main_window import MainWindow

SEED = 1234
CANDIDATES = 2


class SelfTestError(RuntimeError):
    """A check that ran but found something wrong; the message says what."""


def check_model(path: Path, sample: Path | None = None) -> tuple[str, np.ndarray]:
    """Complete the bottom half of `sample` (by default the model's sample picture) with
    the model at `path` on the CPU, as two candidates (which deals the candidates out over
    the cores).

    Returns a one-line summary and the first candidate's (C, H, W) image. Raises
    SelfTestError, or whatever loading raised (ModelFileError names the file and the
    problem).
    """
    model = load_model(path)
    c = model.config
    image = load_image(sample or sample_picture(c.channels), c.height, c.width, c.channels,
                       c.levels)
    known = np.ones((c.height, c.width), bool)
    known[c.height // 2:] = False
    start = time.perf_counter()
    # The compiled kernels by name: they are what this checks (a completion that starts while
    # a warm-up is still at work would otherwise run on NumPy).
    completion = complete(model, image, known, sampler="fast", seed=SEED, device="cpu",
                          candidates=CANDIDATES,
                          backend="compiled" if kernels.AVAILABLE else "numpy")
    sampled = {(s.candidate, s.row, s.col, s.channel) for s in completion}
    seconds = time.perf_counter() - start
    results = completion.images

    rows, cols = np.nonzero(~known)
    expected = {(k, r, col, ch) for k in range(CANDIDATES)
                for r, col in zip(rows.tolist(), cols.tolist(), strict=True)
                for ch in range(c.channels)}
    if sampled != expected:
        raise SelfTestError(f"sampled {len(sampled & expected)} of the {len(expected)} unknown "
                            f"pixel values and {len(sampled - expected)} others.")
    if not (results[:, :, known] == image[None, :, known]).all():
        changed = int((results[:, :, known] != image[None, :, known]).sum())
        raise SelfTestError(f"the completion changed {changed} known pixel values.")
    if results.max() >= c.levels:
        raise SelfTestError(f"sampled level {int(results.max())}, but the model has only "
                            f"{c.levels} levels (0..{c.levels - 1}).")
    engine = "compiled kernels" if kernels.AVAILABLE else "NumPy, Numba unavailable"
    summary = (f"{len(rows)} pixels x {CANDIDATES} candidates completed in {seconds:.2f} s "
               f"(fast sampler, {engine}); known pixels unchanged")
    return summary, results[0]


def distinct_colours(image: QImage, step: int = 5) -> int:
    return len({image.pixel(x, y) for x in range(0, image.width(), step)
                for y in range(0, image.height(), step)})


def check_window(model_path: Path, completed: np.ndarray) -> str:
    """Show the main window with `completed` on its canvas and grab it."""
    app = QApplication.instance()
    window = MainWindow(str(model_path))
    try:
        window.show()
        app.processEvents()
        blank_canvas = window.canvas.grab().toImage()
        window.canvas.drawing.values[:] = completed
        window.canvas.update()
        app.processEvents()
        grab = window.grab().toImage()
        if grab.isNull() or grab.width() == 0 or grab.height() == 0:
            raise SelfTestError("grabbing the window gave no image.")
        colours = distinct_colours(grab)
        if colours < 3:
            raise SelfTestError(f"the window grab is blank ({colours} colours).")
        if window.canvas.grab().toImage() == blank_canvas:
            raise SelfTestError("the canvas looks the same with and without a picture on it.")
        return (f"{grab.width()}x{grab.height()} grab with {colours} colours "
                f"({app.platformName()} platform)")
    finally:
        window.hide()
        window.runner.shutdown()
        window.deleteLater()


def run_self_test(models_dir: str | Path | None = None, sample: Path | None = None) -> int:
    """Run every check, print one line each; 0 if all passed, else 1."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    models_dir = Path(models_dir or MODELS_DIR)
    failures = []

    def passed(what: str, line: str) -> None:
        print(f"ok    {what}: {line}", flush=True)

    def failed(what: str, error: Exception) -> None:
        # A self-test reports every failure, whatever its kind, rather than stopping at one.
        reason = str(error) if isinstance(error, (SelfTestError, ValueError, OSError)) \
            else f"{type(error).__name__}: {error}"
        failures.append(f"{what}: {reason}")
        print(f"FAIL  {what}: {reason}", flush=True)

    names = bundled_models(models_dir)
    if not names:
        failed("models", SelfTestError(f"no models (*.safetensors) found in {models_dir}."))
    working = None
    for name in names:
        path = models_dir / f"{name}.safetensors"
        try:
            line, completed = check_model(path, sample)
        except Exception as error:  # reported, whatever it is: see failed()
            failed(f"model {name}", error)
        else:
            passed(f"model {name}", line)
            working = working or (path, completed)

    # Informational: a packaged app that compiled its kernels again at a second start
    # would keep every user waiting (CI starts the bundle twice and checks this line).
    kernel_origin = kernels.cache_report()
    if kernel_origin:
        passed("kernels", kernel_origin)

    if working is None:
        failed("window", SelfTestError("not shown: no model could be loaded."))
    else:
        try:
            passed("window", check_window(*working))
        except Exception as error:  # reported, whatever it is: see failed()
            failed("window", error)
    app.processEvents()

    if failures:
        print("self-test FAILED: " + "; ".join(failures), file=sys.stderr, flush=True)
        return 1
    print("self-test OK", flush=True)
    return 0
