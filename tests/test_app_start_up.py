"""The main window's start-up and model loading, offscreen with a tiny model saved as if
bundled: the canvas is ready from the model's card before the weights load, Complete pressed
meanwhile runs once they arrive, weights or a model file that fail to load give a dialog and
keep the drawing, closing while the weights load starts nothing; a grayscale model offers a
pen intensity; a loaded model's kernels compile in the background without holding up a
completion, the start-up objects are frozen in the GUI thread, and the app exits only after
its warm-up has finished."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

import gui.model_loading as model_loading_module
from conftest import close, erase_bottom, tiny_model
from gui.main_window import MainWindow
from main import parse_arguments
from model import save_model
from model.fast import kernels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def window(tiny_window):
    """A shown window on the one tiny model bundled (8x8, 3 classes)."""
    return tiny_window


def test_a_bad_model_file_shows_a_dialog_and_keeps_the_current_model(window, tmp_path,
                                                                      monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args: shown.append(args[2]))
    (tmp_path / "junk.safetensors").write_text("junk")
    (tmp_path / "junk.json").write_text("{}")
    model = window.model
    assert window.open_model(str(tmp_path / "junk.safetensors")) is False
    assert shown and "junk.json" in shown[0]
    assert window.model is model


def test_command_line_options():
    args = parse_arguments(["--demo", "--screenshot", "x.png", "--quit-after", "1.5"])
    assert args.demo and args.screenshot == "x.png" and args.quit_after == 1.5


def test_at_start_up_the_canvas_is_ready_from_the_card_before_the_weights_load(
        qtbot, tiny_files):
    w = MainWindow("tiny", load_in_background=True)
    qtbot.addWidget(w)
    # Laid out from the JSON card at once: the user can draw while torch loads.
    assert w.canvas.drawing.values.shape == (1, 8, 8)
    # Waited for by its outcome, not its signal: a tiny model can load before a
    # waitSignal would connect.
    qtbot.waitUntil(lambda: not w.loader.pending, timeout=30000)
    assert w.model is not None and w.model.config.height == 8
    assert w.complete_action.isEnabled()
    close(w)


def test_complete_pressed_while_the_weights_load_runs_once_they_arrive(qtbot, tiny_files):
    w = MainWindow("tiny", load_in_background=True)
    qtbot.addWidget(w)
    w.canvas.drawing.known[4:] = False
    with qtbot.waitSignal(w.runner.finished, timeout=30000):
        w.complete()  # before the weights are in (or just after: both must complete)
    assert w.canvas.drawing.known.all()
    close(w)


def test_weights_that_fail_to_load_in_the_background_give_a_dialog_and_keep_the_drawing(
        qtbot, tiny_files, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args: shown.append(args[2]))
    weights = tiny_files / "tiny.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    w = MainWindow("tiny", load_in_background=True)
    qtbot.addWidget(w)
    w.canvas.drawing.values[0, 0, :3] = 1
    qtbot.waitUntil(lambda: not w.loader.pending, timeout=30000)
    qtbot.waitUntil(lambda: bool(shown))
    assert "tiny.safetensors" in shown[0]
    assert w.model is None
    assert w.canvas.drawing.values[0, 0, :3].tolist() == [1, 1, 1]
    w.complete()  # nothing to complete with: a no-op, not a crash
    assert not w.runner.is_running()
    close(w)


def test_time_startup_reports_the_window_then_the_model(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, str(root / "main.py"), "--time-startup"],
                            capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "after" in line]
    assert lines[0].startswith("window shown after") and lines[1].startswith("model loaded")
    shown, loaded = (float(line.split("after ")[1].split(" s")[0]) for line in lines[:2])
    assert 0 < shown <= loaded


def test_closing_while_the_weights_load_after_complete_was_pressed_starts_nothing(
        qtbot, tiny_files, qtlog):
    w = MainWindow("tiny", load_in_background=True)
    qtbot.addWidget(w)
    w.canvas.drawing.known[4:] = False
    w.complete()  # waits for the weights
    assert w.complete_when_loaded
    close(w)  # joins the loading thread; its `loaded` is still on its way
    qtbot.waitUntil(lambda: not w.loader.pending, timeout=30000)
    assert not w.runner.is_running()
    assert not [record.message for record in qtlog.records if "QThread" in record.message]


def test_a_grayscale_model_offers_a_pen_intensity_that_the_pen_draws_with(qtbot, tmp_path):
    from test_canvas import stroke

    gray = tiny_model(distribution="categorical", levels=16, height=8, width=8)
    weights, _ = save_model(gray, tmp_path / "gray")
    w = MainWindow(str(weights))
    qtbot.addWidget(w)
    w.show()
    pen = w.options.pen_box
    assert pen.isEnabled() and (pen.minimum(), pen.maximum()) == (1, 15)
    pen.setValue(9)
    stroke(qtbot, w.canvas, [(2, 3)])
    assert w.canvas.drawing.values[0, 2, 3] == 9 and w.canvas.drawing.known[2, 3]
    close(w)


def test_a_loaded_model_has_its_kernels_compiled_in_the_background(window, qtbot, monkeypatch):
    import model.fast

    warmed = []
    monkeypatch.setattr(model.fast, "warm_up",
                        lambda m: warmed.append((m, threading.current_thread().name)))
    window.open_model("tiny")  # the same model, loaded afresh
    qtbot.waitUntil(lambda: len(warmed) == 1, timeout=5000)
    assert warmed[0][0] is window.model and warmed[0][1] == "kernel warm-up"


def test_start_up_objects_are_frozen_in_the_gui_thread_once_a_warm_up_is_done(
        window, qtbot, monkeypatch):
    """gc.freeze ran in the warm-up thread, at whatever moment of the GUI thread's work."""
    import model.fast

    monkeypatch.setattr(model.fast, "warm_up", lambda m: None)
    frozen_in = []
    monkeypatch.setattr(model_loading_module, "freeze_start_up_objects",
                        lambda: frozen_in.append(threading.current_thread()))
    window.open_model("tiny")  # the same model, loaded afresh: a new warm-up
    qtbot.waitUntil(lambda: bool(frozen_in), timeout=5000)
    assert set(frozen_in) == {threading.main_thread()}


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
def test_complete_pressed_while_the_kernels_still_compile_does_not_wait_for_them(
        window, qtbot, monkeypatch):
    """At a new installation's first start compiling the kernels takes 10-20 s."""
    compiling, release = threading.Event(), threading.Event()
    original = kernels.sample_share

    def sample_share(*args):  # "compiling" until released: every caller waits, as on Numba's
        if threading.current_thread().name == model_loading_module.WARM_UP_THREAD:  # lock
            compiling.set()
        release.wait(30)
        return original(*args)

    monkeypatch.setattr(kernels, "sample_share", sample_share)
    try:
        window.open_model("tiny")  # loaded afresh: a new warm-up starts
        qtbot.waitUntil(compiling.is_set, timeout=10000)
        erase_bottom(window)
        with qtbot.waitSignal(window.runner.finished, timeout=10000):
            window.complete()
        assert window.canvas.drawing.known.all()
        assert compiling.is_set() and not release.is_set()  # done while still "compiling"
    finally:
        release.set()
        model_loading_module.wait_for_warm_ups(30)


# In a process of its own: the app's event loop runs and quits, which the shared test
# QApplication must not do.
EXIT_WITH_A_SLOW_WARM_UP = """
import sys, threading, time
from PySide6.QtCore import QMetaObject, Qt
from PySide6.QtWidgets import QApplication
import gui.model_loading
import main

finished = threading.Event()

def slow_warm_up(model):  # quits the app itself, then is still busy for a while
    QMetaObject.invokeMethod(QApplication.instance(), "quit", Qt.ConnectionType.QueuedConnection)
    time.sleep(0.5)
    finished.set()

gui.model_loading.warm_up_quietly = slow_warm_up
code = main.main([])
sys.exit(code if finished.is_set() else 3)
"""


def test_the_app_exits_only_after_its_kernel_warm_up_has_finished(tmp_path):
    """A warm-up cut off at exit aborted the packaged app: main() waits for it."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", EXIT_WITH_A_SLOW_WARM_UP], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# In a process of its own: what the garbage collector tracks is the whole process's.
START_UP_OBJECTS = """
import gc
from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication
from gui.main_window import MainWindow
from gui.model_loading import wait_for_warm_ups

app = QApplication([])
before = len(gc.get_objects())
window = MainWindow("digits-ink", load_in_background=True)
# The weights load in a thread (their signal is queued until the loop runs), then the kernels
# warm up. (Not a loop of app.processEvents(): PySide6 6.12 drops a reference to None per
# call, and some thousands of calls end the process.)
loop = QEventLoop()
window.loader.loaded.connect(loop.quit)
window.loader.failed.connect(loop.quit)
loop.exec()
wait_for_warm_ups(120)
app.processEvents()  # the warm-up's "done", queued to this thread, which freezes them
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_objects_made_at_start_up_are_left_out_of_garbage_collections(tmp_path):
    """A full collection walked every object PyTorch, Numba and Qt had made (210 ms with the
    GIL held, the window standing still); once the first model's kernels are ready they are
    frozen, and collections walk only what was made since."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", START_UP_OBJECTS], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    before, frozen, tracked = map(int, result.stdout.split()[-3:])
    assert frozen > before + 50_000  # Qt's, and then PyTorch's and Numba's, imported since
    assert tracked < frozen // 20
