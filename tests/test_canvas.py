"""The drawing document and the pixel canvas: tools, strokes, undo and what gets painted."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QUndoStack
from PySide6.QtWidgets import QApplication

from gui.brush import line_cells
from gui.canvas import DEFAULT_BRUSH_SIZE, PixelCanvas
from gui.document import Drawing, DrawingEdit
from gui.pixel_images import UNKNOWN_TONES, drawing_image, shown_rgb
from gui.surprise_heatmap import heatmap_colours

LEFT, RIGHT = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton
SHIFT = Qt.KeyboardModifier.ShiftModifier
ROWS, COLS, LEVELS = 6, 8, 4


@pytest.fixture
def canvas(qtbot):
    stack = QUndoStack()
    widget = PixelCanvas(stack, Drawing(1, ROWS, COLS, LEVELS))
    assert widget.brush_size == DEFAULT_BRUSH_SIZE == 3  # as wide as MNIST's strokes
    widget.set_brush_size(1)  # the strokes below are traced cell by cell
    widget._test_stack = stack  # keep the stack alive as long as the widget
    qtbot.addWidget(widget)
    widget.resize(320, 300)  # cells of 40: the 320x240 image is centred vertically
    return widget


def centre(canvas, cell):
    return canvas.cell_rect(*cell).center().toPoint()


def stroke(qtbot, canvas, cells, button=LEFT, modifier=Qt.KeyboardModifier.NoModifier):
    """Press on the first cell, move over the others, release on the last."""
    qtbot.mousePress(canvas, button, modifier, centre(canvas, cells[0]))
    for cell in cells[1:]:
        qtbot.mouseMove(canvas, centre(canvas, cell))
    qtbot.mouseRelease(canvas, button, modifier, centre(canvas, cells[-1]))


def send_mouse(canvas, kind, cell, button, buttons, modifiers):
    """A mouse event with exactly these buttons and modifiers (QTest moves carry neither)."""
    point = canvas.cell_rect(*cell).center()
    event = QMouseEvent(kind, point, canvas.mapToGlobal(point), button, buttons, modifiers)
    QApplication.sendEvent(canvas, event)


def ink_cells(canvas):
    drawing = canvas.drawing
    assert drawing.known.all()
    return {tuple(cell) for cell in np.argwhere(drawing.values[0] > 0).tolist()}


def unknown_cells(canvas):
    return {tuple(cell) for cell in np.argwhere(~canvas.drawing.known).tolist()}


def same(snapshot_a, snapshot_b):
    return all(np.array_equal(a, b) for a, b in zip(snapshot_a, snapshot_b, strict=True))


# The document


def test_a_new_drawing_is_an_empty_known_canvas():
    drawing = Drawing(3, 4, 5, 256)
    assert drawing.values.shape == (3, 4, 5) and drawing.values.dtype == np.uint8
    assert drawing.known.shape == (4, 5) and drawing.known.all()
    assert drawing.is_blank() and drawing.unknown_count() == 0
    with pytest.raises(ValueError, match="channels"):
        Drawing(2, 4, 5, 2)


def test_snapshot_restore_and_copy_are_independent():
    drawing = Drawing(1, 3, 3, 2)
    saved = drawing.snapshot()
    drawing.values[0, 1, 1] = 1
    drawing.known[2] = False
    assert not drawing.is_blank() and drawing.unknown_count() == 3
    twin = drawing.copy()
    values = drawing.values
    drawing.restore(saved)
    assert drawing.is_blank() and drawing.values is values  # restored in place
    assert twin.values[0, 1, 1] == 1 and twin.unknown_count() == 3
    with pytest.raises(ValueError, match="does not fit"):
        drawing.restore((np.zeros((1, 2, 2), np.uint8), np.ones((2, 2), bool)))


def test_drawing_edit_undoes_and_redoes_and_its_first_redo_changes_nothing():
    drawing = Drawing(1, 2, 2, 2)
    before = drawing.snapshot()
    drawing.values[0, 0, 0] = 1
    after = drawing.snapshot()
    changes = []
    stack = QUndoStack()
    stack.push(DrawingEdit(drawing, before, after, "Draw", on_change=lambda: changes.append(1)))
    assert same(drawing.snapshot(), after) and stack.undoText() == "Draw"
    stack.undo()
    assert same(drawing.snapshot(), before)
    stack.redo()
    assert same(drawing.snapshot(), after) and len(changes) == 3


# Geometry


def test_a_drawing_converts_to_another_models_levels_and_channels():
    drawing = Drawing(1, 2, 3, 2)
    drawing.values[0, 0] = [0, 1, 1]
    drawing.known[1, 2] = False
    grey = drawing.converted(1, 2, 3, 16)
    assert grey.levels == 16 and grey.values[0].tolist() == [[0, 15, 15], [0, 0, 0]]
    assert np.array_equal(grey.known, drawing.known)  # unknown stays unknown
    colour = grey.converted(3, 2, 3, 8)
    assert colour.values[:, 0, 1].tolist() == [7, 7, 7]  # grey to colour repeats the grey
    assert np.array_equal(colour.converted(1, 2, 3, 2).values, drawing.values)
    assert drawing.converted(1, 4, 4, 16) is None  # another size: nothing sensible to keep


def test_cells_are_whole_squares_centred_in_the_widget(canvas):
    assert canvas.cell_rect(0, 0).getRect() == (0, 30, 40, 40)
    assert canvas.cell_rect(ROWS - 1, COLS - 1).bottomRight() == QPointF(320, 270)
    assert canvas.cell_at(QPointF(45, 75)) == (1, 1)
    assert canvas.cell_at(QPointF(10, 10)) is None  # the margin above the image
    assert canvas.sizeHint().width() == 560 and canvas.minimumSizeHint().width() == 140


def test_line_cells_is_bresenham():
    assert line_cells((0, 0), (2, 5)) == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    assert line_cells((3, 1), (0, 1)) == [(3, 1), (2, 1), (1, 1), (0, 1)]


# Tools


def test_a_pen_stroke_inks_exactly_the_cells_it_crosses_as_one_undo_step(canvas, qtbot):
    edits = []
    canvas.edited.connect(lambda: edits.append(1))
    stroke(qtbot, canvas, [(1, 1), (1, 2), (1, 4), (4, 4)])  # jumps leave no gaps
    assert ink_cells(canvas) == {(1, 1), (1, 2), (1, 3), (1, 4), (2, 4), (3, 4), (4, 4)}
    assert canvas.drawing.values.max() == LEVELS - 1
    assert canvas.undo_stack.count() == 1 and edits


def test_pen_value_and_brush_size(canvas, qtbot):
    canvas.set_pen_value(2)
    canvas.set_brush_size(3)
    stroke(qtbot, canvas, [(2, 3)])
    assert ink_cells(canvas) == {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)}
    assert set(canvas.drawing.values[0, 1:4, 2:5].ravel().tolist()) == {2}
    stroke(qtbot, canvas, [(0, 7)])  # clipped at the corner
    assert {(0, 6), (0, 7), (1, 6), (1, 7)} <= ink_cells(canvas)
    with pytest.raises(ValueError):
        canvas.set_pen_value(LEVELS)


def test_eraser_and_right_button_mark_cells_unknown(canvas, qtbot):
    canvas.drawing.values[:] = 3
    canvas.set_tool("eraser")
    stroke(qtbot, canvas, [(0, 0), (0, 2)])
    canvas.set_tool("rect_erase")  # the right button erases whatever the tool
    stroke(qtbot, canvas, [(5, 7), (4, 7)], button=RIGHT)
    assert unknown_cells(canvas) == {(0, 0), (0, 1), (0, 2), (5, 7), (4, 7)}
    assert not canvas.drawing.values[:, ~canvas.drawing.known].any()
    assert canvas.undo_stack.count() == 2


def test_shift_drag_draws_a_straight_line_from_the_press_point(canvas):
    move, held = QEvent.Type.MouseMove, Qt.MouseButton.NoButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, (0, 0), LEFT, LEFT, SHIFT)
    send_mouse(canvas, move, (3, 1), held, LEFT, SHIFT)  # an earlier preview, replaced
    send_mouse(canvas, move, (2, 5), held, LEFT, SHIFT)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, (2, 5), LEFT, held, SHIFT)
    assert ink_cells(canvas) == set(line_cells((0, 0), (2, 5)))
    assert canvas.undo_stack.count() == 1


def test_rect_erase_marks_the_dragged_rectangle_on_release(canvas, qtbot):
    canvas.set_tool("rect_erase")
    qtbot.mousePress(canvas, LEFT, pos=centre(canvas, (3, 5)))
    qtbot.mouseMove(canvas, centre(canvas, (1, 2)))
    assert canvas.drawing.known.all()  # only a preview until release
    qtbot.mouseRelease(canvas, LEFT, pos=centre(canvas, (1, 2)))
    assert unknown_cells(canvas) == {(r, c) for r in (1, 2, 3) for c in (2, 3, 4, 5)}
    assert canvas.undo_stack.count() == 1


def test_erase_below_marks_the_clicked_row_and_every_row_under_it(canvas, qtbot):
    canvas.set_tool("erase_below")
    qtbot.mouseClick(canvas, LEFT, pos=centre(canvas, (3, 6)))
    assert unknown_cells(canvas) == {(r, c) for r in (3, 4, 5) for c in range(COLS)}
    assert canvas.undo_stack.count() == 1
    with pytest.raises(ValueError):
        canvas.set_tool("spray")


def test_undo_restores_exactly_and_redo_reapplies_a_stroke(canvas, qtbot):
    canvas.drawing.known[4:] = False
    before = canvas.drawing.snapshot()
    canvas.set_brush_size(2)
    stroke(qtbot, canvas, [(3, 0), (4, 3), (5, 6)])
    after = canvas.drawing.snapshot()
    assert not same(before, after)
    canvas.undo_stack.undo()
    assert same(canvas.drawing.snapshot(), before)
    canvas.undo_stack.redo()
    assert same(canvas.drawing.snapshot(), after)


def test_clear_invert_and_erase_all_are_single_undo_steps(canvas):
    canvas.clear()
    assert canvas.undo_stack.count() == 0  # nothing changed, nothing to undo
    canvas.drawing.values[0, 0, :3] = [0, 1, 3]
    canvas.drawing.known[5] = False
    canvas.invert()
    assert canvas.drawing.values[0, 0, :4].tolist() == [3, 2, 0, 3]
    assert not canvas.drawing.values[0, 5].any()  # unknown pixels stay unknown, at 0
    canvas.erase_all()
    assert canvas.drawing.unknown_count() == ROWS * COLS
    canvas.clear()
    assert canvas.drawing.is_blank() and canvas.undo_stack.count() == 3
    canvas.undo_stack.undo()
    canvas.undo_stack.undo()
    canvas.undo_stack.undo()
    assert canvas.drawing.values[0, 0, :3].tolist() == [0, 1, 3]
    assert unknown_cells(canvas) == {(5, c) for c in range(COLS)}


def test_read_only_ignores_every_edit(canvas, qtbot):
    canvas.set_read_only(True)
    stroke(qtbot, canvas, [(1, 1), (2, 2)])
    stroke(qtbot, canvas, [(3, 3)], button=RIGHT)
    canvas.erase_all()
    canvas.invert()
    assert canvas.drawing.is_blank() and canvas.undo_stack.count() == 0
    canvas.set_read_only(False)
    stroke(qtbot, canvas, [(1, 1)])
    assert ink_cells(canvas) == {(1, 1)}


def test_escape_cancels_and_an_undo_drops_a_stroke_in_progress(canvas, qtbot):
    qtbot.mousePress(canvas, LEFT, pos=centre(canvas, (1, 1)))
    qtbot.mouseMove(canvas, centre(canvas, (1, 3)))
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    qtbot.mouseRelease(canvas, LEFT, pos=centre(canvas, (1, 3)))
    assert canvas.drawing.is_blank() and canvas.undo_stack.count() == 0
    canvas.invert()
    qtbot.mousePress(canvas, RIGHT, pos=centre(canvas, (0, 0)))
    canvas.undo_stack.undo()  # e.g. Ctrl+Z while dragging: restores the whole picture
    qtbot.mouseRelease(canvas, RIGHT, pos=centre(canvas, (0, 0)))
    assert canvas.drawing.is_blank() and canvas.undo_stack.index() == 0


def test_brackets_change_the_brush_within_one_to_five(canvas, qtbot):
    sizes = []
    canvas.brush_size_changed.connect(sizes.append)
    for _ in range(6):
        qtbot.keyClick(canvas, "]")
    assert canvas.brush_size == 5 and sizes == [2, 3, 4, 5]
    qtbot.keyClick(canvas, "[")
    canvas.smaller_brush()
    assert canvas.brush_size == 3
    canvas.set_brush_size(0)
    assert canvas.brush_size == 1


def test_hover_reports_the_cell_and_leaving_the_image(canvas):
    cells = []
    canvas.hovered.connect(lambda row, col: cells.append((row, col)))
    no_button, no_modifier = Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    for cell in [(2, 5), (2, 5), (-1, 5), (0, 0)]:  # (-1, 5) lies in the margin above
        send_mouse(canvas, QEvent.Type.MouseMove, cell, no_button, no_button, no_modifier)
    QApplication.sendEvent(canvas, QEvent(QEvent.Type.Leave))
    assert cells == [(2, 5), (-1, -1), (0, 0), (-1, -1)]


def test_set_drawing_starts_a_new_history(canvas, qtbot):
    stroke(qtbot, canvas, [(0, 0)])
    canvas.set_drawing(Drawing(1, 4, 4, 2))
    assert canvas.undo_stack.count() == 0 and canvas.pen_value == 1
    stroke(qtbot, canvas, [(0, 0)])
    assert canvas.drawing.values[0, 0, 0] == 1


# Painting


def colour_at(image, point, ratio):
    return image.pixelColor(int(point.x() * ratio), int(point.y() * ratio))


def test_a_grab_shows_ink_background_and_a_two_tone_checkerboard(canvas, qtbot):
    stroke(qtbot, canvas, [(0, 0), (0, 3)])
    canvas.set_tool("erase_below")
    qtbot.mouseClick(canvas, LEFT, pos=centre(canvas, (4, 0)))
    canvas.set_grid_visible(True)
    pixmap = canvas.grab()
    image, ratio = pixmap.toImage(), pixmap.devicePixelRatio()
    assert colour_at(image, canvas.cell_rect(0, 1).center(), ratio) == QColor(255, 255, 255)
    assert colour_at(image, canvas.cell_rect(2, 2).center(), ratio) == QColor(0, 0, 0)
    unknown = canvas.cell_rect(5, 6)
    quarter = unknown.width() / 4
    tones = {colour_at(image, unknown.topLeft() + QPointF(dx, dy) * quarter, ratio).getRgb()[:3]
             for dx in (1, 3) for dy in (1, 3)}
    assert tones == {tuple(tone) for tone in UNKNOWN_TONES.tolist()}


def test_cursor_and_heatmap_are_painted(canvas):
    canvas.set_cursor_position(2, 2)
    nats = np.zeros((ROWS, COLS))
    nats[3, 3] = 2.0
    canvas.set_heatmap(nats, scale=2.0)
    pixmap = canvas.grab()
    image, ratio = pixmap.toImage(), pixmap.devicePixelRatio()
    edge = canvas.cell_rect(2, 2).topLeft() + QPointF(1.5, 10)
    assert colour_at(image, edge, ratio).blue() > 200  # the cursor's outline
    hot = colour_at(image, canvas.cell_rect(3, 3).center(), ratio)
    cold = colour_at(image, canvas.cell_rect(4, 4).center(), ratio)
    assert hot.red() > 150 and hot.green() > 150 and hot.blue() < 60  # the top: yellow
    assert cold.blue() > cold.red() > cold.green()  # the bottom of the scale: violet
    with pytest.raises(ValueError):
        canvas.set_heatmap(np.zeros((2, 2)))


def test_the_heatmap_colours_come_from_its_scale_not_from_the_picture(qtbot):
    """A translucent red layer could not be told from an emoji's own reds: the picture goes
    grey under the heatmap, so equal surprise looks the same on red and on green."""
    canvas = PixelCanvas(QUndoStack(), Drawing(3, 1, 3, 8))
    qtbot.addWidget(canvas)
    canvas.resize(300, 200)
    canvas.drawing.values[:, 0, 0] = [7, 1, 1]  # red
    canvas.drawing.values[:, 0, 1] = [1, 6, 1]  # green
    canvas.drawing.known[0, 2] = False
    canvas.set_heatmap(np.array([[1.0, 1.0, np.nan]]), scale=2.0)
    pixmap = canvas.grab()
    image, ratio = pixmap.toImage(), pixmap.devicePixelRatio()
    on_red, on_green = (colour_at(image, canvas.cell_rect(0, col).center(), ratio)
                        for col in (0, 1))
    assert max(abs(a - b) for a, b in zip(on_red.getRgb(), on_green.getRgb(),
                                          strict=True)) <= 8
    middle = heatmap_colours(np.array(0.5)).tolist()  # teal
    assert on_red.green() > on_red.red() and abs(on_red.blue() - middle[2]) < 50
    # An unknown pixel has no surprise: its checkerboard shows, uncoloured.
    unknown = canvas.cell_rect(0, 2)
    tone = colour_at(image, unknown.topLeft() + QPointF(1, 1) * unknown.width() / 4, ratio)
    assert tone.getRgb()[:3] in {tuple(t) for t in UNKNOWN_TONES.tolist()}


def hover(canvas, cell):
    no_button = Qt.MouseButton.NoButton
    send_mouse(canvas, QEvent.Type.MouseMove, cell, no_button, no_button,
               Qt.KeyboardModifier.NoModifier)


def test_the_heatmap_legend_names_its_scale_and_reads_out_the_pixel_under_the_mouse(canvas):
    nats = np.linspace(0, 3, ROWS * COLS).reshape(ROWS, COLS)
    nats[5, 7] = np.nan
    canvas.set_heatmap(nats, scale=2.0, marks=((1.0, "chance"),))
    legend = canvas.legend_rect()
    assert not legend.isEmpty() and legend.top() >= canvas.cell_rect(ROWS - 1, 0).bottom()
    assert canvas.legend_ticks() == [(0.0, "0"), (1.0, "1.00 chance"), (2.0, "≥ 2.00 nats")]
    assert canvas.heatmap_readout() == "Point at a pixel to read its surprise."
    hover(canvas, (1, 2))
    assert canvas.heatmap_readout() == f"(1, 2): {nats[1, 2]:.2f} nats (p = " \
        f"{np.exp(-nats[1, 2]):.3g})"
    canvas.set_tool("rect_erase")  # no outline of a brush over it
    pixmap = canvas.grab()  # the pixel read out is outlined in white
    image, ratio = pixmap.toImage(), pixmap.devicePixelRatio()
    edge = canvas.cell_rect(1, 2).topLeft() + QPointF(0.2, canvas.cell_rect(1, 2).height() / 2)
    assert colour_at(image, edge, ratio) == QColor("white")
    hover(canvas, (5, 7))
    assert canvas.heatmap_readout() == "(5, 7): unknown, nothing to measure"
    canvas.set_heatmap(None)
    assert canvas.legend_rect().isEmpty()


def test_colour_drawings_map_levels_to_rgb():
    drawing = Drawing(3, 1, 1, 4)
    drawing.values[:, 0, 0] = [3, 1, 0]
    image = drawing_image(drawing)
    assert image.width() == 2 and image.pixelColor(1, 1) == QColor(255, 85, 0)


def test_the_canvas_shows_each_level_in_the_grey_a_saved_png_holds(tmp_path):
    """One level-to-brightness rule for the screen and the file, for every K from 2 to 256."""
    from model.images import load_image, write_png

    for levels in range(2, 257):
        values = np.arange(levels, dtype=np.uint8).reshape(1, 1, levels)
        on_screen = shown_rgb(values, np.ones((1, levels), bool), levels)[0, ::2, 0]
        path = tmp_path / f"levels-{levels}.png"
        write_png(path, values, levels)
        with Image.open(path) as saved:
            in_file = np.asarray(saved.convert("L"))[0]
        np.testing.assert_array_equal(on_screen, in_file, str(levels))
        reloaded = load_image(path, 1, levels, 1, levels, invert="no")[0, 0]
        np.testing.assert_array_equal(reloaded, values[0, 0], str(levels))
