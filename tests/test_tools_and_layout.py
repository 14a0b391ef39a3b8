"""Tools and layout: at the default size Complete and Stop are on the toolbar, not behind its
overflow (the colour palette has a row of its own); the window and the canvas keep their
size as candidates come and go; the tool keys work whatever has focus in the window."""

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication, QToolBar
from test_canvas import stroke

from conftest import bundled_window, close, erase_bottom
from gui.main_window import DEFAULT_SIZE
from gui.options import OptionsPanel


@pytest.fixture(params=[None, 11.0], ids=["Qt's font", "a desktop's 11 pt font"])
def font(request, qapp):
    """The application's font for the test: a desktop's is larger than offscreen Qt's."""
    original = QApplication.font()
    if request.param is not None:
        larger = QFont(original)
        larger.setPointSizeF(request.param)
        QApplication.setFont(larger)
    yield
    QApplication.setFont(original)


def on_the_tool_bar(window, action) -> bool:
    """Shown on the toolbar itself, not in the menu behind its overflow chevron."""
    bar = window.findChild(QToolBar, "tools")
    button = bar.widgetForAction(action)
    return button is not None and button.isVisible() and bar.rect().contains(
        button.geometry())


def test_complete_and_stop_are_on_the_toolbar_at_the_default_size_with_a_colour_model(
        font, qtbot, tmp_path, monkeypatch):
    window = bundled_window(tmp_path, monkeypatch, "rgb")
    try:
        assert window.size() == QSize(*DEFAULT_SIZE)
        assert window.colour_tool_bar.isVisible()  # the palette is there too
        stroke(qtbot, window.canvas, [(1, 1), (1, 4)])  # Undo now names its step
        for action in (window.complete_action, window.stop_action, window.undo_action,
                       window.redo_action):
            assert on_the_tool_bar(window, action), action.iconText()
    finally:
        close(window)


def test_the_window_and_the_canvas_keep_their_size_as_candidates_come_and_go(
        qtbot, tmp_path, monkeypatch):
    window = bundled_window(tmp_path, monkeypatch, "ink")
    try:
        qtbot.wait(50)
        sizes = window.size(), window.canvas.size()
        assert sizes[0] == QSize(*DEFAULT_SIZE)
        erase_bottom(window)
        window.options.candidates_box.setValue(4)
        with qtbot.waitSignal(window.runner.finished, timeout=20_000):
            window.complete()
        qtbot.wait(50)
        assert window.gallery.count == 4
        assert (window.size(), window.canvas.size()) == sizes
        stroke(qtbot, window.canvas, [(0, 0)])  # the candidates go
        qtbot.wait(50)
        assert window.gallery.count == 0
        assert (window.size(), window.canvas.size()) == sizes
    finally:
        close(window)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    w = bundled_window(tmp_path, monkeypatch, "gray")
    w.activateWindow()
    yield w
    close(w)


def focus_widgets(window):
    options = window.options
    return [options.class_box, options.temperature_box, options.model_box,
            options.sampler_box, window.brush_box]


def test_brackets_resize_the_brush_whatever_has_focus(window, qtbot):
    """`[` and `]` were swallowed while an Options combobox had focus."""
    canvas = window.canvas
    for widget in focus_widgets(window):
        widget.setFocus()
        size = canvas.brush_size
        qtbot.keyClick(widget, "[")
        assert canvas.brush_size == size - 1, widget
        qtbot.keyClick(widget, "]")
        assert canvas.brush_size == size, widget


def test_tool_keys_choose_the_tool_whatever_has_focus(window, qtbot):
    temperature = window.options.temperature_box.value()
    for widget in focus_widgets(window):
        widget.setFocus()
        for key, tool in (("E", "eraser"), ("R", "rect_erase"), ("D", "erase_below"),
                          ("P", "pen")):
            qtbot.keyClick(widget, key)
            assert window.canvas.tool == tool, (widget, key)
    assert window.options.temperature_box.value() == temperature  # nothing typed into it
    assert window.options.model_box.currentText() == "gray"


def test_space_completes_while_a_spin_box_has_focus(window, qtbot):
    window.canvas.drawing.known[4:] = False
    window.options.temperature_box.setFocus()
    with qtbot.waitSignal(window.runner.finished, timeout=20_000):
        qtbot.keyClick(window.options.temperature_box, Qt.Key.Key_Space)
    assert window.canvas.drawing.known.all()


def test_the_speed_reads_in_whole_pixels_a_second_from_ten_up(qtbot):
    """"533.7 px/s" claimed a precision the slider has not, and widened its label."""
    options = OptionsPanel(["tiny"])
    qtbot.addWidget(options)
    options.set_pixels_per_second(500)
    assert options.speed_label.text() == f"{round(options.pixels_per_second)} px/s"
    options.set_pixels_per_second(2)
    assert options.speed_label.text() == "2 px/s"
    options.set_pixels_per_second(0)
    assert options.speed_label.text() == "instant"
