"""The window reads the drawing: the first stroke completes, "Looks like" follows the drawing
without holding a stroke up, and candidates show the class each was completed as."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

import gui.looks_like as looks_like_module
from conftest import bundle, close, tiny_model
from gui.document import Drawing
from gui.main_window import MainWindow
from model import complete
from model.posterior import class_posterior

SIZE = 12
ROOT = Path(__file__).resolve().parent.parent


def open_window(qtbot, tmp_path, monkeypatch, num_classes=4):
    bundle(tmp_path, monkeypatch, tiny=tiny_model(height=SIZE, width=SIZE,
                                                  num_classes=num_classes))
    window = MainWindow("tiny")  # closed by the test (qtbot would close it with changes)
    window.show()
    return window


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    w = open_window(qtbot, tmp_path, monkeypatch)
    yield w
    w.posterior_watcher.wait()
    close(w)


def drag(qtbot, canvas, cells):
    """A pen stroke through the centres of `cells` ((row, col) pairs), pressed to released."""
    points = [canvas.cell_rect(r, c).center().toPoint() for r, c in cells]
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=points[0])
    for point in points[1:]:
        qtbot.mouseMove(canvas, point)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=points[-1])


def test_the_top_of_a_digit_drawn_with_the_default_pen_completes_below_its_ink(window, qtbot):
    canvas = window.canvas
    assert canvas.brush_size == window.brush_box.value() == 3  # as wide as MNIST's strokes
    drag(qtbot, canvas, [(2, 3), (2, 8), (5, 8)])  # the top of a 7
    drawn = canvas.drawing.snapshot()
    lowest_ink = int(np.flatnonzero(drawn[0].any(axis=(0, 2)))[-1])
    assert lowest_ink == 6 and drawn[1].all()  # nothing erased
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        qtbot.keyClick(canvas, Qt.Key.Key_Space)
    values, known = canvas.drawing.snapshot()
    assert known.all()
    np.testing.assert_array_equal(values[:, :lowest_ink + 1], drawn[0][:, :lowest_ink + 1])
    # The rows below the ink were sampled, from the class Auto read off the drawing.
    label = window.runner.class_labels[0]
    to_complete = np.zeros((SIZE, SIZE), bool)
    to_complete[lowest_ink + 1:] = True
    expected = complete(window.model, drawn[0], ~to_complete, seed=window.runner.seed,
                        class_label=label).run()[0]
    np.testing.assert_array_equal(values, expected)
    posterior = class_posterior(window.model, drawn[0], ~to_complete)
    assert label == int(np.argmax(posterior))
    assert window.statusBar().currentMessage() == f"Completed as a {label}."
    # Marking the rows and completing them is one undo step: back to the drawing as drawn.
    window.undo_stack.undo()
    np.testing.assert_array_equal(canvas.drawing.values, drawn[0])
    assert canvas.drawing.known.all()


def test_complete_on_an_empty_canvas_draws_a_whole_sample(window, qtbot):
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    assert window.canvas.drawing.known.all()
    assert window.runner.class_labels == (None,)  # nothing drawn: no class to read
    expected = complete(window.model, np.zeros((1, SIZE, SIZE)), np.zeros((SIZE, SIZE), bool),
                        seed=window.runner.seed, class_label=None).run()[0]
    np.testing.assert_array_equal(window.canvas.drawing.values, expected)


def test_a_drawing_down_to_the_bottom_row_asks_what_to_erase(window):
    window.canvas.drawing.values[0, :, 5] = 1
    window.complete()
    assert not window.runner.is_running()
    assert "the drawing reaches the bottom row" in window.statusBar().currentMessage()


def test_the_known_pixels_a_completion_keeps(window):
    drawing = Drawing(1, 5, 4, 2)
    assert not drawing.known_for_completion().any()  # empty: everything is sampled
    drawing.values[0, 1, 2] = 1
    assert drawing.known_for_completion()[:2].all()
    assert not drawing.known_for_completion()[2:].any()
    drawing.known[4, 0] = False  # once something is erased, exactly that
    np.testing.assert_array_equal(drawing.known_for_completion(), drawing.known)


def test_looks_like_follows_the_drawing(window, qtbot):
    canvas = window.canvas
    assert window.docks["Looks like"].isVisible()
    assert window.options.class_box.currentText() == "Auto"
    drag(qtbot, canvas, [(1, 2), (1, 9), (4, 9)])
    drawing = canvas.drawing
    expected = class_posterior(window.model, drawing.values, drawing.known_for_completion())
    qtbot.waitUntil(lambda: window.looks_like.posterior is not None and np.allclose(
        window.looks_like.posterior, expected), timeout=5000)
    assert window.looks_like.caption == (f"Looks like {np.argmax(expected)} "
                                         f"({expected.max():.0%})")
    # An erased hole: the known pixels before it are what counts.
    drawing.known[2:, :] = False
    drawing.values[:, 2:] = 0
    canvas.edited.emit()
    expected = class_posterior(window.model, drawing.values, drawing.known)
    qtbot.waitUntil(lambda: np.allclose(window.looks_like.posterior, expected), timeout=5000)


def test_a_stroke_never_waits_for_the_posterior(window, qtbot, monkeypatch):
    """With a posterior that takes a second, every mouse move of a stroke is still drawn at
    once: the computation runs in its own thread, one at a time, on the latest drawing."""
    calls, release = [], threading.Event()
    slow_thread = []

    def slow_posterior(model, values, known):
        slow_thread.append(threading.current_thread() is not threading.main_thread())
        calls.append(np.array(values))
        release.wait(1.0)
        return np.full(model.config.num_classes, 1 / model.config.num_classes)

    monkeypatch.setattr("model.posterior.class_posterior", slow_posterior)
    canvas = window.canvas
    drag(qtbot, canvas, [(1, 1), (1, 2)])
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5000)  # now computing, for a second
    started = time.perf_counter()
    for col in range(3, 11):
        qtbot.mousePress(canvas, Qt.MouseButton.LeftButton,
                         pos=canvas.cell_rect(6, col).center().toPoint())
        qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton,
                           pos=canvas.cell_rect(6, col).center().toPoint())
    elapsed = time.perf_counter() - started
    assert canvas.drawing.values[0, 6, 3:11].all()  # every click was drawn ...
    assert elapsed < 0.5  # ... while the posterior was still being computed
    assert len(calls) == 1 and all(slow_thread)
    release.set()
    # Then one more computation catches up with the drawing as it is now.
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=5000)
    np.testing.assert_array_equal(calls[-1], canvas.drawing.values)


def test_a_slow_posterior_gets_a_compiled_one_prepared_once_in_its_own_thread(
        window, qtbot, monkeypatch):
    """The panel's first slow posterior sets one thread preparing a faster one
    (model.posterior_scorer); the panel meanwhile stays exact."""
    from model import posterior_scorer

    monkeypatch.setattr(looks_like_module, "PREPARE_FAST_SCORER", True)
    monkeypatch.setattr(posterior_scorer, "WORTH_COMPILING_S", -1.0)  # every pass is slow
    prepared, release = [], threading.Event()

    def prepare(scorer):
        prepared.append(threading.current_thread().name)
        release.wait(5)
        return "exact: a test"
    monkeypatch.setattr(posterior_scorer.PosteriorScorer, "prepare", prepare)
    canvas = window.canvas
    drag(qtbot, canvas, [(1, 2), (1, 9)])
    qtbot.waitUntil(lambda: prepared == [looks_like_module.SCORER_THREAD], timeout=5000)
    drag(qtbot, canvas, [(3, 2), (3, 9)])
    drawing = canvas.drawing
    expected = class_posterior(window.model, drawing.values, drawing.known_for_completion())
    qtbot.waitUntil(lambda: np.allclose(window.looks_like.posterior, expected), timeout=5000)
    assert prepared == [looks_like_module.SCORER_THREAD]
    release.set()


EXIT_DURING_A_COMPILE = """
import threading, time, torch
from gui.looks_like import SCORER_THREAD
from gui.model_loading import exit_process

def busy():  # PyTorch's threads at work, as while the compile's timing runs
    a = torch.randn(256, 256)
    while True:
        a = torch.tanh(a @ a)

threading.Thread(target=busy, name=SCORER_THREAD, daemon=True).start()
time.sleep(0.5)
exit_process(3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_the_app_exits_at_once_while_the_panel_still_compiles(attempt):
    """The compile cannot be stopped: the process ends without waiting for it, and without
    the abort of an interpreter cleaning up around PyTorch's busy threads."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", EXIT_DURING_A_COMPILE], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "terminate called" not in done.stderr
    assert time.perf_counter() - started < 30


def test_looks_like_is_hidden_for_a_model_without_classes(qtbot, tmp_path, monkeypatch):
    w = open_window(qtbot, tmp_path, monkeypatch, num_classes=0)
    assert not w.docks["Looks like"].isVisible()
    assert not w.docks["Looks like"].toggleViewAction().isEnabled()
    assert [w.options.class_box.itemText(i) for i in range(w.options.class_box.count())] == [
        "Any"]
    drag(qtbot, w.canvas, [(1, 2), (1, 5)])
    assert not w.posterior_watcher.busy and w.looks_like.posterior is None
    close(w)


def test_candidates_show_the_class_each_was_completed_as(window, qtbot):
    window.options.candidates_box.setValue(6)
    drawing = window.canvas.drawing
    drawing.values[0, 1, 2:9] = 1
    drawing.known[5:] = False
    before = drawing.snapshot()
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    classes = window.runner.class_labels
    drawn = complete(window.model, *before, candidates=6, seed=window.runner.seed,
                     class_label="auto")
    assert classes == drawn.task.class_labels and drawn.task.classes.policy == "drawn"
    assert window.gallery.classes == classes
    assert window.gallery.isVisible()
    assert all(label in range(4) for label in classes)


def test_posterior_watcher_drops_results_of_a_model_it_no_longer_watches(qtbot, monkeypatch):
    from model import posterior

    release = threading.Event()
    exact = posterior.class_posterior

    def held_posterior(model, values, known):
        release.wait(5)
        return exact(model, values, known)

    monkeypatch.setattr(posterior, "class_posterior", held_posterior)
    watcher = looks_like_module.ClassPosteriorWatcher()
    model = tiny_model(num_classes=3)
    seen = []
    watcher.computed.connect(seen.append)
    watcher.set_model(model)
    watcher.request(np.zeros((1, 6, 7)), np.ones((6, 7), bool))
    qtbot.waitUntil(lambda: watcher.busy, timeout=2000)
    watcher.set_model(None)  # e.g. another model was opened meanwhile
    release.set()
    watcher.wait()
    qtbot.waitUntil(lambda: not watcher.busy, timeout=2000)
    assert seen == [None, None]  # only the two resets: the old model's result was dropped
    assert watcher.posterior is None
    watcher.set_model(model)
    watcher.request(np.zeros((1, 6, 7)), np.ones((6, 7), bool))
    qtbot.waitUntil(lambda: watcher.posterior is not None, timeout=5000)
    np.testing.assert_allclose(watcher.posterior,
                               exact(model, np.zeros((6, 7)), np.ones((6, 7), bool)))
