"""Unsaved work is never lost unasked. Closing and New offer Save, Discard and Cancel;
switching to a model of other levels offers to keep the picture converted to them (its undo
history too), to discard it, or to cancel; a model of another size offers Save instead of
Keep. The title is marked modified only after an edit."""

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog
from test_canvas import stroke

from conftest import answer, choose_model
from gui.image_io import load_image

SAVE_DISCARD_CANCEL = {"Save", "Discard", "Cancel"}


def draw(window, qtbot):
    stroke(qtbot, window.canvas, [(2, 1), (2, 6)])
    assert window.windowTitle().startswith("untitled *")


def saving_to(monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(path), ""))


@pytest.mark.parametrize("choice", ["Save", "Discard", "Cancel"])
def test_closing_with_unsaved_work_offers_save_discard_and_cancel(window, qtbot, tmp_path,
                                                                  monkeypatch, choice):
    draw(window, qtbot)
    saving_to(monkeypatch, tmp_path / "mine.png")
    drawn = window.canvas.drawing.values.copy()
    offered = answer(qtbot, choice)
    closed = window.close()
    assert [set(buttons) for buttons in offered] == [SAVE_DISCARD_CANCEL]
    assert closed == (choice != "Cancel")
    assert (tmp_path / "mine.png").exists() == (choice == "Save")
    if choice == "Save":
        assert np.array_equal(load_image(tmp_path / "mine.png", 8, 8, 1, 2), drawn)
    if choice == "Cancel":
        assert window.isVisible() and np.array_equal(window.canvas.drawing.values, drawn)


def test_new_offers_to_save_first(window, qtbot, tmp_path, monkeypatch):
    draw(window, qtbot)
    saving_to(monkeypatch, tmp_path / "first.png")
    offered = answer(qtbot, "Save")
    window.new_action.trigger()
    assert [set(buttons) for buttons in offered] == [SAVE_DISCARD_CANCEL]
    assert (tmp_path / "first.png").exists() and window.canvas.drawing.is_blank()
    assert window.windowTitle().startswith("untitled — ")


def test_switching_model_keeps_unsaved_work_converted_with_its_history(window, qtbot):
    draw(window, qtbot)
    drawn = window.canvas.drawing.values.copy()
    offered = answer(qtbot, "Keep the picture")
    choose_model(window, "gray")
    assert [set(buttons) for buttons in offered] == [{"Keep the picture", "Discard", "Cancel"}]
    drawing = window.canvas.drawing
    assert window.model_name == "gray" and drawing.levels == 16
    assert np.array_equal(drawing.values, drawn * 15)  # ink is the brightest grey
    assert window.windowTitle().startswith("untitled *")  # still unsaved
    window.undo_action.trigger()  # the stroke, undone at the new levels
    assert drawing.is_blank() and drawing.levels == 16
    window.redo_action.trigger()
    assert drawing.values.max() == 15


@pytest.mark.parametrize("choice", ["Discard", "Cancel"])
def test_switching_model_can_discard_the_work_or_be_cancelled(window, qtbot, choice):
    draw(window, qtbot)
    drawn = window.canvas.drawing.snapshot()
    answer(qtbot, choice)
    choose_model(window, "gray")
    drawing = window.canvas.drawing
    if choice == "Discard":
        assert window.model_name == "gray" and drawing.is_blank() and drawing.levels == 16
        assert window.windowTitle().startswith("untitled — ")
        assert not window.undo_action.isEnabled()
    else:
        assert window.model_name == "ink" and window.options.model_box.currentText() == "ink"
        assert np.array_equal(drawing.values, drawn[0]) and drawing.levels == 2
        assert window.windowTitle().startswith("untitled *")
        assert window.undo_action.isEnabled()


def test_a_model_of_another_size_offers_to_save_the_work_first(window, qtbot, tmp_path,
                                                               monkeypatch):
    draw(window, qtbot)
    saving_to(monkeypatch, tmp_path / "digit.png")
    offered = answer(qtbot, "Save")
    choose_model(window, "rgb")
    assert [set(buttons) for buttons in offered] == [SAVE_DISCARD_CANCEL]
    assert (tmp_path / "digit.png").exists()
    assert window.model_name == "rgb" and window.canvas.drawing.values.shape == (3, 6, 6)


def test_a_saved_picture_stays_in_view_across_a_model_switch_without_a_question(
        window, qtbot, tmp_path):
    draw(window, qtbot)
    assert window._save_to(tmp_path / "saved.png")
    offered = answer(qtbot, "Cancel", tries=20)
    choose_model(window, "gray")
    qtbot.wait(300)
    assert offered == []  # nothing to lose: no question
    assert window.canvas.drawing.values.max() == 15  # the same picture, in 16 greys
    # Black and white to 16 greys loses nothing: as saved.
    assert window.windowTitle().startswith("saved.png — ")


def test_the_title_is_marked_modified_only_after_an_edit(window, qtbot, tmp_path):
    picture = tmp_path / "digit-3.png"
    draw(window, qtbot)
    assert window._save_to(picture)
    window.new_action.trigger()
    assert window.open_image(picture)
    assert window.windowTitle() == "digit-3.png — PixelCNN Studio"
    stroke(qtbot, window.canvas, [(6, 6)])
    assert window.windowTitle() == "digit-3.png * — PixelCNN Studio"
    window.undo_action.trigger()
    assert window.windowTitle() == "digit-3.png — PixelCNN Studio"
