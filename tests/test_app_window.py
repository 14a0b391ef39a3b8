"""The main window end to end, offscreen, with a tiny model saved as if bundled."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

import gui.main_window as main_window_module
from conftest import tiny_model
from gui.main_window import MainWindow
from main import parse_arguments
from model import save_model


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(main_window_module, "bundled_models", lambda: ["tiny"])
    model = tiny_model(height=8, width=8, num_classes=3)
    save_model(model, tmp_path / "tiny", data_mode="threshold")
    monkeypatch.setattr(main_window_module, "resolve_model",
                        lambda name: tmp_path / f"{name}.safetensors" if name == "tiny"
                        else Path(name))
    w = MainWindow("tiny")
    w.show()
    yield w
    w.undo_stack.setClean()  # close without the "discard changes?" question
    w.close()
    assert not w.runner.is_running()


def erase_bottom(window, rows=4):
    d = window.canvas.drawing
    d.values[0, :4] = np.eye(4, 8, dtype=np.uint8)
    d.known[-rows:] = False
    d.values[:, -rows:] = 0


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


def test_closing_mid_run_stops_the_worker_cleanly(window, qtbot):
    erase_bottom(window, rows=8)
    window.options.set_pixels_per_second(10)
    window.complete()
    qtbot.wait(200)
    window.undo_stack.setClean()
    window.close()
    assert not window.runner.is_running()


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
