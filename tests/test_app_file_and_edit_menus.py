"""The main window's File and Edit menus, offscreen with a tiny model saved as if bundled: a
bad image file gives a dialog and leaves the canvas unchanged, Open and Save round-trip a
drawing, Paste reads the clipboard's image in memory as an opened file is read and leaves it
unsaved, and the Redo keys never repeat a key (Ctrl+Shift+Z redoes)."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QMessageBox

import gui.window_layout as window_layout_module
from conftest import erase_bottom
from gui.image_io import load_image


@pytest.fixture
def window(tiny_window):
    """A shown window on the one tiny model bundled (8x8, 3 classes)."""
    return tiny_window


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
