"""The main window end to end, offscreen, with a tiny model saved as if bundled."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QMessageBox

import gui.model_loading as model_loading_module
import gui.window_layout as window_layout_module
import model as model_package
import model.rerank as rerank_module
from conftest import FailingGPU, close, cuda_out_of_memory, erase_bottom, tiny_model
from gui.image_io import load_image
from gui.main_window import MainWindow
from main import parse_arguments
from model import complete, save_model
from model.devices import DeviceChoice
from model.fast import kernels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def window(qtbot, tiny_files):
    """A shown window on the one tiny model bundled (8x8, 3 classes)."""
    w = MainWindow("tiny")
    w.show()
    yield w
    close(w)
    assert not w.runner.is_running()


def test_complete_fills_every_unknown_pixel_and_changes_no_known_one(window, qtbot):
    erase_bottom(window)
    before = window.canvas.drawing.snapshot()
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    values, known = window.canvas.drawing.snapshot()
    assert known.all()
    assert np.array_equal(values[:, before[1]], before[0][:, before[1]])
    # One undo step brings the erased state back exactly.
    window.undo_stack.undo()
    assert np.array_equal(window.canvas.drawing.known, before[1])
    # A grab of the window after a completion shows a non-blank canvas.
    image = window.canvas.grab().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 2


def test_the_window_signals_the_end_of_its_completion_once_it_has_taken_it_in(window,
                                                                               qtbot):
    """main.py's --screenshot grabs the window then; a failed run ends it too."""
    ended = []
    window.completion_ended.connect(lambda: ended.append(window.before_completion))
    erase_bottom(window)
    with qtbot.waitSignal(window.completion_ended, timeout=20000):
        window.complete()
    assert ended == [None] and window.canvas.drawing.known.all()


def test_stop_mid_run_keeps_what_was_sampled_and_is_undoable(window, qtbot):
    erase_bottom(window, rows=8)
    window.options.set_pixels_per_second(20)
    with qtbot.waitSignal(window.runner.finished, timeout=20000) as blocker:
        window.complete()
        qtbot.wait(400)
        window.stop()
    assert blocker.args == [True]
    known = window.canvas.drawing.known
    assert 0 < known.sum() < known.size
    window.undo_stack.undo()
    assert not window.canvas.drawing.known.any()


def held_up(monkeypatch, module, name: str, seconds: float = 0.3) -> threading.Event:
    """Make module.name wait `seconds` when called (in the worker); the event says it was."""
    entered = threading.Event()
    original = getattr(module, name)

    def slow(*args, **kwargs):
        entered.set()
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    return entered


# The phases of a completion in which the window is closed (the test says how it gets there).
CLOSING_PHASES = ("queued", "building", "sampling", "ranking", "ended", "finished")


@pytest.mark.parametrize("phase", CLOSING_PHASES)
def test_closing_the_window_in_any_phase_of_a_completion_ends_it_cleanly(
        window, qtbot, qtlog, monkeypatch, phase):
    runner = window.runner
    if phase == "ranking":
        central_hole(window)  # hole-aware (Auto): the candidates are ranked at the end
        entered = held_up(monkeypatch, rerank_module, "rank")
    else:
        erase_bottom(window, rows=8)
        entered = held_up(monkeypatch, model_package, "complete")
    window.options.set_pixels_per_second(10 if phase == "sampling" else 0)
    before_known = window.canvas.drawing.known.copy()
    window.complete()
    worker, worker_thread = runner.worker, runner.worker_thread
    if phase in ("building", "ranking"):
        assert entered.wait(10)
    elif phase == "sampling":
        qtbot.waitUntil(lambda: runner.done >= 2, timeout=10_000)
    elif phase == "ended":  # the worker is done; the runner has not taken its last samples
        deadline = time.monotonic() + 10
        while worker.outcome is None and time.monotonic() < deadline:
            time.sleep(0.01)  # no Qt events: nothing reaches the GUI meanwhile
        assert worker.outcome == ("finished", False)
    elif phase == "finished":
        qtbot.waitUntil(lambda: not runner.is_running(), timeout=10_000)

    began = time.monotonic()
    window.undo_stack.setClean()
    assert window.close()
    assert time.monotonic() - began < 3
    assert not runner.is_running() and worker_thread.isFinished()
    assert window.before_completion is None  # the run's end reached the window
    known = window.canvas.drawing.known
    assert (known >= before_known).all()
    if phase in ("ended", "finished"):
        assert known.all()  # every sample was kept, the last ones too
    qtbot.wait(50)  # late queued signals of the run arrive at a closed window
    assert not [record.message for record in qtlog.records if "QThread" in record.message]


def test_candidates_animate_side_by_side_and_one_can_be_adopted(window, qtbot):
    erase_bottom(window)
    window.options.candidates_box.setValue(4)
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
    assert window.gallery.isVisible()
    assert window.candidate_images.shape[0] == 4
    window.adopt_candidate(2)
    assert np.array_equal(window.canvas.drawing.values, window.candidate_images[2])


def test_a_bad_image_file_shows_a_dialog_and_leaves_the_canvas_unchanged(window, tmp_path,
                                                                          monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args: shown.append(args[2]))
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    before = window.canvas.drawing.snapshot()
    assert window.open_image(bad) is False
    assert shown and "broken.png" in shown[0]
    after = window.canvas.drawing.snapshot()
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def test_open_and_save_round_trip(window, tmp_path):
    d = window.canvas.drawing
    d.values[0, 2:6, 3] = 1
    path = tmp_path / "drawing.png"
    assert window._save_to(path)
    d.values[:] = 0
    assert window.open_image(path)
    assert window.canvas.drawing.values[0, 2:6, 3].tolist() == [1, 1, 1, 1]


def test_a_pasted_image_is_read_in_memory_as_an_opened_file_is_and_stays_unsaved(
        window, tmp_path):
    """Paste wrote the clipboard's image to pasted.png in the settings folder to read it."""
    image = QImage(16, 16, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    for y in range(2, 14):  # a dark bar on white: inverted to light ink on black
        for x in range(6, 10):
            image.setPixelColor(x, y, QColor("black"))
    image.save(str(tmp_path / "bar.png"))
    expected = load_image(tmp_path / "bar.png", 8, 8, 1, 2)
    assert expected.any() and not expected.all()
    QApplication.clipboard().setImage(image)
    window.paste_action.trigger()
    drawing = window.canvas.drawing
    assert np.array_equal(drawing.values, expected) and drawing.known.all()
    assert window.undo_stack.undoText() == "Paste image"
    assert window.file_path is None and window.windowTitle().startswith("untitled *")
    settings_folder = Path(QSettings().fileName()).parent
    assert not (settings_folder / "pasted.png").exists()
    assert not list(settings_folder.rglob("*.png"))


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


def central_hole(window):
    d = window.canvas.drawing
    d.values[0] = np.eye(8, dtype=np.uint8)
    d.known[2:5, 2:6] = False
    d.values[:, 2:5, 2:6] = 0


def test_a_hole_with_known_pixels_after_it_is_completed_hole_aware_by_default(window, qtbot):
    central_hole(window)
    window.options.rerank_box.setValue(6)
    before_values, before_known = window.canvas.drawing.snapshot()
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    ranked = window.runner.ranked
    assert ranked is not None and len(ranked.candidates) == 6 and ranked.method == "resample"
    assert ranked.index == rerank_module.choose("resample", ranked.image_loglik,
                                                ranked.evidence_loglik, ranked.seed)
    # Auto: each candidate's class drawn from the posterior, shown in the strip.
    assert window.gallery.classes == ranked.class_labels == window.runner.class_labels
    values, known = window.canvas.drawing.snapshot()
    assert known.all()
    assert np.array_equal(values, ranked.image)  # the kept candidate is on the canvas
    assert np.array_equal(values[:, before_known], before_values[:, before_known])
    assert window.gallery.isVisibleTo(window) and window.gallery.chosen == ranked.index
    assert "hole-aware" in window.statusBar().currentMessage()


def test_hole_aware_completion_stays_off_without_known_pixels_after_the_hole(window, qtbot):
    erase_bottom(window)
    window.options.rerank_box.setValue(6)
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    assert window.runner.ranked is None and window.run_candidates == 1


def test_hole_aware_completion_can_be_turned_off(window, qtbot):
    central_hole(window)
    window.options.hole_aware_box.setCurrentText("Off")
    with qtbot.waitSignal(window.runner.finished, timeout=30000):
        window.complete()
    assert window.runner.ranked is None and window.canvas.drawing.known.all()


def test_a_gpu_out_of_memory_completes_on_the_cpu_with_a_message(window, qtbot, monkeypatch):
    gpu = FailingGPU(monkeypatch, cuda_out_of_memory(), fail_after=5)
    gpu.release = threading.Event()
    window.device_choice = DeviceChoice("cuda", {"cpu": 0.05, "cuda": 0.01})  # the GPU won
    erase_bottom(window)
    before_values, before_known = window.canvas.drawing.snapshot()
    at_fallback = []
    window.runner.fell_back.connect(lambda _: at_fallback.append(
        (window.statusBar().currentMessage(), window.canvas.drawing.snapshot())))
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        window.complete()
        qtbot.waitUntil(lambda: window.canvas.drawing.known.sum() >= before_known.sum() + 5)
        gpu.release.set()
    assert gpu.devices == ["cuda", "cpu"]
    message, (values, known) = at_fallback[0]
    assert message == "CUDA ran out of memory; completing on the CPU instead."
    # The CUDA attempt's pixels are gone: the CPU starts from the picture as it was.
    assert np.array_equal(values, before_values) and np.array_equal(known, before_known)

    options = window.options
    cpu = complete(window.model, before_values, before_known, seed=window.runner.seed,
                   temperature=options.temperature, class_label=options.class_label,
                   sampler=options.sampler, device="cpu").run()
    assert np.array_equal(window.canvas.drawing.values, cpu[0])
    assert window.canvas.drawing.known.all()
    assert window.statusBar().currentMessage() == (
        f"Completed as a {window.runner.class_labels[0]}. On the CPU: CUDA ran out of memory.")
    assert window.device_label.text() == "CPU"
    window.undo_stack.undo()
    assert np.array_equal(window.canvas.drawing.known, before_known)


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


@pytest.mark.parametrize(("platform_keys", "expected"), [
    (["Ctrl+Shift+Z"], ["Ctrl+Shift+Z"]),  # X11: Redo is Ctrl+Shift+Z already
    (["Ctrl+Y"], ["Ctrl+Y", "Ctrl+Shift+Z"]),  # Windows
])
def test_redo_keys_never_repeat_a_key(monkeypatch, platform_keys, expected):
    from PySide6.QtGui import QKeySequence

    monkeypatch.setattr(QKeySequence, "keyBindings",
                        lambda key: [QKeySequence(k) for k in platform_keys])
    keys = [key.toString() for key in window_layout_module.redo_shortcuts()]
    assert keys == expected


def test_redo_has_each_key_once_and_ctrl_shift_z_redoes(window, qtbot):
    keys = [key.toString() for key in window.redo_action.shortcuts()]
    assert len(keys) == len(set(keys)) and "Ctrl+Shift+Z" in keys
    erase_bottom(window)
    window.canvas.erase_all()
    window.undo_stack.undo()
    assert window.undo_stack.canRedo()
    window.activateWindow()
    qtbot.keyClick(window.canvas, "Z", Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    assert not window.undo_stack.canRedo()  # redone
    assert not window.canvas.drawing.known.any()
