"""The history cannot break while a completion runs: Undo, Redo and every edit from a menu
or key stop the completion first, what it sampled becoming one undo step of its own."""

import numpy as np
import pytest
from PySide6.QtCore import Qt
from test_canvas import stroke

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def window(window):
    """conftest's window, active: the keys typed go to it."""
    window.activateWindow()
    return window


def ink_then_erase_below(window, qtbot, row=4):
    """A stroke, then "Erase below" clicked at `row`: two steps, as a user makes them."""
    canvas = window.canvas
    stroke(qtbot, canvas, [(1, 1), (1, 6), (6, 6)])
    window.tool_actions["erase_below"].trigger()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton,
                     pos=canvas.cell_rect(row, 3).center().toPoint())
    assert window.undo_stack.undoText() == "Erase below"
    return canvas.drawing.snapshot()


def start_slowly(window, qtbot, pixels=3):
    """Complete at 20 pixels a second and wait until `pixels` have appeared."""
    window.options.set_pixels_per_second(20)
    window.complete()
    qtbot.waitUntil(lambda: window.runner.pixels_done >= pixels, timeout=10_000)
    assert window.runner.is_running()


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_ctrl_z_during_a_completion_stops_it_and_undoes_what_it_drew(window, qtbot):
    """The bug: Ctrl+Z mid-run undid the earlier "Erase below" while the sampler kept
    painting over the restored pixels, and after Esc that step was gone."""
    erased = ink_then_erase_below(window, qtbot)
    start_slowly(window, qtbot)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, CTRL)

    assert not window.runner.is_running()
    assert same(window.canvas.drawing.snapshot(), erased)
    assert window.undo_stack.undoText() == "Erase below"  # still in the history
    assert window.undo_stack.redoText() == "Stopped completion"
    assert window.statusBar().currentMessage().startswith("Completion stopped and undone")
    qtbot.wait(300)  # nothing paints over the picture any more
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert same(window.canvas.drawing.snapshot(), erased)

    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, CTRL | SHIFT)  # Redo: what it sampled
    values, known = window.canvas.drawing.snapshot()
    assert erased[1].sum() < known.sum() < known.size
    assert np.array_equal(values[:, erased[1]], erased[0][:, erased[1]])
    for _ in range(2):
        qtbot.keyClick(window.canvas, Qt.Key.Key_Z, CTRL)
    assert window.canvas.drawing.known.all()  # before "Erase below": every step is there
    assert window.undo_stack.undoText() == "Draw"


def test_undo_is_offered_while_a_completion_runs_and_redo_is_not(window, qtbot):
    window.canvas.erase_all()
    window.undo_stack.clear()  # nothing to undo but the completion itself
    start_slowly(window, qtbot)
    assert window.undo_action.isEnabled() and not window.redo_action.isEnabled()
    window.undo_action.trigger()
    assert not window.runner.is_running() and not window.canvas.drawing.known.any()
    assert window.redo_action.isEnabled()


@pytest.mark.parametrize(("edit", "step"), [("invert", "Invert"), ("clear", "Clear"),
                                            ("erase everything", "Erase all")])
def test_an_edit_during_a_completion_comes_after_what_it_sampled(window, qtbot, edit, step):
    erased = ink_then_erase_below(window, qtbot)
    start_slowly(window, qtbot)
    if edit == "invert":
        qtbot.keyClick(window.canvas, Qt.Key.Key_I, CTRL)  # from its key
    else:
        {"clear": window.clear_action, "erase everything": window.erase_all_action}[
            edit].trigger()  # from the menu

    assert not window.runner.is_running()
    assert window.undo_stack.undoText() == step
    changed = window.canvas.drawing.snapshot()
    window.undo_action.trigger()
    stopped = window.canvas.drawing.snapshot()  # the completion's samples, as a step
    assert erased[1].sum() < stopped[1].sum() < stopped[1].size
    assert window.undo_stack.undoText() == "Stopped completion"
    if edit == "invert":
        values, known = stopped
        assert np.array_equal(changed[0][:, known], 1 - values[:, known])
    window.undo_action.trigger()
    assert same(window.canvas.drawing.snapshot(), erased)


def test_switching_the_model_during_a_completion_stops_it_first(window, qtbot):
    ink_then_erase_below(window, qtbot)
    start_slowly(window, qtbot)
    assert window.open_model("ink")
    assert not window.runner.is_running()
    assert window.undo_stack.undoText() == "Stopped completion"
