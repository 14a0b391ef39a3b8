"""The zoomed pixel canvas: shows a `Drawing` and lets the user draw, erase and undo on it.

Its pixels as images come from pixel_images.py, where its cells lie from canvas_layout.py,
which cells a tool touches from brush.py, and the surprise heatmap with its legend from
surprise_heatmap.py; this widget holds the tools' state, the strokes and the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen, QUndoStack
from PySide6.QtWidgets import QWidget

from .brush import brush_corners, clipped_rect, line_cells, on_image, set_cells
from .canvas_layout import CellGrid
from .document import Drawing, DrawingEdit, Snapshot
from .pixel_images import drawing_image
from .surprise_heatmap import SurpriseHeatmap

TOOLS = ("pen", "eraser", "rect_erase", "erase_below")
MIN_BRUSH, MAX_BRUSH = 1, 5

BACKGROUND = QColor(45, 45, 48)
GRID_COLOUR = QColor(128, 128, 128, 90)
CURSOR_COLOUR = QColor(0, 200, 255)
PREVIEW_COLOUR = QColor(255, 190, 0)

DEFAULT_BRUSH_SIZE = 3


@dataclass
class _Stroke:
    """What happens between one mouse press and its release."""

    button: Qt.MouseButton
    action: str  # "pen", "eraser" or "rect_erase"
    before: Snapshot
    start: tuple[int, int]  # cells may lie outside the image; painting clips them
    last: tuple[int, int]


class PixelCanvas(QWidget):
    """A `Drawing` zoomed with crisp square pixels, and the tools that edit it.

    Every finished stroke (press to release) or action is one `DrawingEdit` on `undo_stack`.
    """

    edited = Signal()  # the drawing's contents changed (live while a stroke goes on)
    hovered = Signal(int, int)  # the cell under the mouse, (-1, -1) when off the image
    brush_size_changed = Signal(int)

    def __init__(self, undo_stack: QUndoStack, drawing: Drawing | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.undo_stack = undo_stack
        self._drawing = drawing if drawing is not None else Drawing(1, 28, 28, 2)
        self._tool = "pen"
        self._pen_value = self._drawing.levels - 1
        self._pen_colour = self._white()  # what the pen draws on a colour drawing
        # As wide as the training digits' strokes: their median run of ink across a row
        # and down a column is 3 pixels (`pixelcnn-studio data`); a 1-pixel pen draws lines
        # thinner than anything the models have seen.
        self._brush_size = DEFAULT_BRUSH_SIZE
        self._grid_visible = False
        self._read_only = False
        self._cursor_cell: tuple[int, int] | None = None
        self._heatmap = SurpriseHeatmap()
        self._hover_cell: tuple[int, int] | None = None
        self._stroke: _Stroke | None = None
        self.setMouseTracking(True)  # hover feedback without a button held
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setMinimumSize(140, 140)
        undo_stack.indexChanged.connect(self._history_moved)

    # The drawing

    @property
    def drawing(self) -> Drawing:
        """The live drawing; change it in place and call update(), or use set_contents."""
        return self._drawing

    def set_drawing(self, drawing: Drawing) -> None:
        """Show another drawing. Its history starts afresh: the undo stack is cleared, since
        its steps belong to the old drawing."""
        self._stroke = None
        self._hover_cell = None  # it may not exist on the new drawing
        levels_changed = drawing.levels != self._drawing.levels
        shape_changed = drawing.known.shape != self._drawing.known.shape
        channels_changed = drawing.channels != self._drawing.channels
        self._drawing = drawing
        self.undo_stack.clear()
        if levels_changed:
            self._pen_value = drawing.levels - 1
        if levels_changed or channels_changed:
            self._pen_colour = self._white()
        if shape_changed:
            self._heatmap.hide()
            self._cursor_cell = None
        self._contents_changed()

    def convert_drawing(self, drawing: Drawing, convert) -> None:
        """Show `drawing`, the same picture at another model's levels or channels, keeping
        the history: every step is converted with `convert` (a function of a snapshot)."""
        stack = self.undo_stack
        steps = [stack.command(i) for i in range(stack.count())]
        if not all(isinstance(step, DrawingEdit) for step in steps):
            self.set_drawing(drawing)  # a step that cannot be converted: start afresh
            return
        for step in steps:
            step.move_to(drawing, convert)
        self._stroke = None
        self._drawing = drawing
        self._pen_value = drawing.levels - 1
        self._pen_colour = self._white()
        self._contents_changed()

    def set_contents(self, values, known, text: str) -> None:
        """Replace the pixels of the current drawing as one undo step (same size)."""
        self._commit_pending_stroke()
        before = self._drawing.snapshot()
        self._drawing.restore((values, known))
        self.push_edit(before, text)

    # Tool settings

    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, name: str) -> None:
        if name not in TOOLS:
            raise ValueError(f"Unknown tool {name!r}; the tools are {', '.join(TOOLS)}.")
        self._tool = name
        self.update()

    @property
    def pen_value(self) -> int:
        return self._pen_value

    def set_pen_value(self, value: int) -> None:
        if not 0 <= value < self._drawing.levels:
            raise ValueError(f"Pen value must lie within 0..{self._drawing.levels - 1}.")
        self._pen_value = int(value)

    @property
    def pen_colour(self) -> tuple[int, ...]:
        """The levels, one per channel, that the pen draws on a colour drawing."""
        return tuple(int(v) for v in self._pen_colour)

    def set_pen_colour(self, levels) -> None:
        """Levels (R, G, B), each within 0..levels-1, for a colour drawing's pen."""
        colour = np.asarray(levels, np.int64).reshape(-1)
        d = self._drawing
        if len(colour) != d.channels or colour.min() < 0 or colour.max() >= d.levels:
            raise ValueError(f"A pen colour for this drawing is {d.channels} levels within "
                             f"0..{d.levels - 1}, not {tuple(colour.tolist())}.")
        self._pen_colour = colour.astype(np.uint8)

    def _white(self) -> np.ndarray:
        return np.full(self._drawing.channels, self._drawing.levels - 1, np.uint8)

    def _pen_levels(self) -> np.ndarray:
        """What one pen dab writes: (C, 1, 1) levels, the pen value for a grey drawing."""
        if self._drawing.channels == 1:
            return np.array([self._pen_value], np.uint8)[:, None, None]
        return self._pen_colour[:, None, None]

    @property
    def brush_size(self) -> int:
        return self._brush_size

    def set_brush_size(self, size: int) -> None:
        """Clamped to 1..5."""
        size = max(MIN_BRUSH, min(MAX_BRUSH, int(size)))
        if size != self._brush_size:
            self._brush_size = size
            self.brush_size_changed.emit(size)
            self.update()

    @Slot()
    def smaller_brush(self) -> None:
        self.set_brush_size(self._brush_size - 1)

    @Slot()
    def larger_brush(self) -> None:
        self.set_brush_size(self._brush_size + 1)

    @property
    def is_read_only(self) -> bool:
        return self._read_only

    def set_read_only(self, read_only: bool) -> None:
        """While read-only (during a completion) no input edits the drawing; a stroke in
        progress is finished first so that it is not lost."""
        if read_only:
            self._commit_pending_stroke()
        self._read_only = read_only
        self.update()

    # Display settings

    def set_grid_visible(self, visible: bool) -> None:
        self._grid_visible = visible
        self.update()

    def set_cursor_position(self, row: int, col: int) -> None:
        """Outline the pixel being completed."""
        self._cursor_cell = (row, col)
        self.update()

    @Slot()
    def clear_cursor_position(self) -> None:
        self._cursor_cell = None
        self.update()

    def set_heatmap(self, nats: np.ndarray | None, scale: float = 1.0,
                    marks: tuple[tuple[float, str], ...] = ()) -> None:
        """Shade each pixel by a value in nats ((H, W); NaN: none, as for unknown pixels) on
        a colour scale from 0 to `scale`, with a legend under the image that names the scale,
        places `marks` ((nats, name) pairs) on it and reads out the value under the mouse.
        None hides it."""
        self._heatmap.show(nats, scale, marks, self._drawing.known.shape)
        self.update()

    @property
    def heatmap(self) -> np.ndarray | None:
        return self._heatmap.nats

    def heatmap_readout(self) -> str:
        """What the legend says about the pixel under the mouse."""
        return self._heatmap.readout(self._hover_cell)

    def legend_ticks(self) -> list[tuple[float, str]]:
        """The labelled positions of the legend's colour scale, (nats, text), left to right."""
        return self._heatmap.ticks()

    def legend_rect(self) -> QRectF:
        """Where the heatmap's legend is drawn (empty without a heatmap)."""
        if not self._heatmap.is_shown:
            return QRectF()
        height = self._legend_height()
        return QRectF(0, self.height() - height, self.width(), height)

    def _legend_height(self) -> int:
        return self._heatmap.legend_height(self.fontMetrics())

    # Whole-drawing actions, one undo step each

    @Slot()
    def clear(self) -> None:
        """Everything known and 0: an empty canvas."""
        self._edit_all("Clear", self._fill_all, True)

    @Slot()
    def erase_all(self) -> None:
        """Everything unknown: the model will draw the whole picture."""
        self._edit_all("Erase all", self._fill_all, False)

    @Slot()
    def invert(self) -> None:
        """Known values v become levels-1-v; unknown pixels stay unknown."""
        self._edit_all("Invert", self._invert_known)

    def _fill_all(self, known: bool) -> None:
        self._drawing.values.fill(0)
        self._drawing.known.fill(known)

    def _invert_known(self) -> None:
        d = self._drawing
        d.values[:, d.known] = d.levels - 1 - d.values[:, d.known]

    def _edit_all(self, text: str, change, *args) -> None:
        if self._read_only:
            return
        self._commit_pending_stroke()
        before = self._drawing.snapshot()
        change(*args)
        self.push_edit(before, text)

    # Geometry

    def _grid(self) -> CellGrid:
        """Where the cells lie: centred above the heatmap's legend when there is one."""
        return CellGrid.fitted(self._drawing.known.shape, self.width(),
                               self.height() - self._legend_height())

    def _inside(self, cell: tuple[int, int]) -> bool:
        return on_image(cell, self._drawing.known.shape)

    def cell_at(self, point: QPointF) -> tuple[int, int] | None:
        """The (row, col) of the image pixel under a widget point, or None off the image."""
        cell = self._grid().cell_under(QPointF(point))
        return cell if self._inside(cell) else None

    def cell_rect(self, row: int, col: int) -> QRectF:
        """Where pixel (row, col) is drawn, in widget coordinates."""
        return self._grid().cell_rect(row, col)

    def sizeHint(self) -> QSize:
        return QSize(560, 560)

    def minimumSizeHint(self) -> QSize:
        return QSize(140, 140)

    # Painting

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        # No smoothing: pixels stay sharp squares however far they are zoomed.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.fillRect(self.rect(), BACKGROUND)
        target = self._grid().image_rect()
        painter.drawImage(target, drawing_image(self._drawing, greyed=self._heatmap.is_shown))
        if self._heatmap.is_shown:
            self._heatmap.paint(painter, target, self.legend_rect(), self.fontMetrics(),
                                self._hover_cell, self.cell_rect)
        if self._grid_visible:
            self._grid().paint_lines(painter, GRID_COLOUR)
        preview = self._preview_rect()
        if preview is not None:
            painter.setPen(QPen(PREVIEW_COLOUR, 0, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(preview.adjusted(0, 0, -1, -1))
        if self._cursor_cell is not None and self._inside(self._cursor_cell):
            painter.setPen(QPen(CURSOR_COLOUR, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(self.cell_rect(*self._cursor_cell).adjusted(1, 1, -1, -1))
        painter.end()

    def _preview_rect(self) -> QRectF | None:
        """The outline of what a click or the current drag would change."""
        shape, grid = self._drawing.known.shape, self._grid()
        if self._stroke is not None and self._stroke.action == "rect_erase":
            first, last = clipped_rect(self._stroke.start, self._stroke.last, shape)
            return None if first is None else grid.cells_rect(first, last)
        if self._read_only or self._hover_cell is None or self._stroke is not None:
            return None
        row, col = self._hover_cell
        if self._tool == "erase_below":
            return grid.cells_rect((row, 0), (shape[0] - 1, shape[1] - 1))
        if self._tool in ("pen", "eraser"):
            first, last = clipped_rect(*brush_corners(row, col, self._brush_size), shape)
            return None if first is None else grid.cells_rect(first, last)
        return None

    # Editing the pixels

    def _paint_line(self, start: tuple[int, int], end: tuple[int, int], action: str) -> bool:
        erase = action == "eraser"
        value = 0 if erase else self._pen_levels()
        changed = False
        for row, col in line_cells(start, end):
            first, last = brush_corners(row, col, self._brush_size)
            changed |= set_cells(self._drawing, first, last, not erase, value)
        return changed

    # Strokes

    def _begin_stroke(self, event: QMouseEvent) -> None:
        cell = self._grid().cell_under(event.position())
        button = event.button()
        if button == Qt.MouseButton.RightButton:
            action = "eraser"  # the right button erases whatever the tool
        elif button == Qt.MouseButton.LeftButton:
            action = self._tool
        else:
            return
        if action == "erase_below":
            if self._inside(cell):
                before = self._drawing.snapshot()
                rows, cols = self._drawing.known.shape
                set_cells(self._drawing, (cell[0], 0), (rows - 1, cols - 1), False, 0)
                self.push_edit(before, "Erase below")
            return
        self._stroke = _Stroke(button, action, self._drawing.snapshot(), cell, cell)
        if action == "rect_erase":
            self.update()
        elif self._paint_line(cell, cell, action):
            self._contents_changed()

    def _continue_stroke(self, event: QMouseEvent) -> None:
        stroke = self._stroke
        cell = self._grid().cell_under(event.position())
        if cell == stroke.last:
            return
        if stroke.action == "rect_erase":
            stroke.last = cell
            self.update()
            return
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            # A straight line from the press point: replace whatever this stroke drew so far.
            self._drawing.restore(stroke.before)
            self._paint_line(stroke.start, cell, stroke.action)
            changed = True
        else:
            changed = self._paint_line(stroke.last, cell, stroke.action)  # no gaps when fast
        stroke.last = cell
        if changed:
            self._contents_changed()

    def _finish_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke.action == "rect_erase":
            set_cells(self._drawing, stroke.start, stroke.last, False, 0)
            self.push_edit(stroke.before, "Erase rectangle")
        else:
            self.push_edit(stroke.before, "Draw" if stroke.action == "pen" else "Erase")
        self.update()

    def _commit_pending_stroke(self) -> None:
        """Finish a stroke in progress as its own undo step before another change."""
        if self._stroke is not None:
            self._finish_stroke()

    def _cancel_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if not self._drawing.same_as(stroke.before):
            self._drawing.restore(stroke.before)
            self._contents_changed()
        self.update()

    @Slot()
    def _history_moved(self) -> None:
        # Our own pushes come after the stroke has ended, so this is an undo or redo during a
        # stroke: it restored a whole snapshot, the stroke's pixels included. Drop the stroke.
        self._stroke = None

    def push_edit(self, before: Snapshot, text: str) -> None:
        """Make the change from `before` to the drawing as it is now one undo step (none
        when nothing changed). Its undo and redo, like every edit's, emit `edited`."""
        if self._drawing.same_as(before):
            return
        edit = DrawingEdit(self._drawing, before, self._drawing.snapshot(), text,
                           on_change=self._contents_changed)
        self.undo_stack.push(edit)  # its first redo() changes nothing and emits edited

    def _contents_changed(self) -> None:
        self.update()
        self.edited.emit()

    # Input

    def _set_hover(self, cell: tuple[int, int] | None) -> None:
        if cell != self._hover_cell:
            self._hover_cell = cell
            self.hovered.emit(*(cell if cell is not None else (-1, -1)))
            self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        event.accept()
        if not self._read_only and self._stroke is None:
            self._begin_stroke(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        event.accept()
        self._set_hover(self.cell_at(event.position()))
        if self._stroke is not None:
            self._continue_stroke(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        event.accept()
        if self._stroke is not None and event.button() == self._stroke.button:
            self._continue_stroke(event)
            self._finish_stroke()

    def leaveEvent(self, event) -> None:
        self._set_hover(None)
        super().leaveEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # By text first: on some layouts the brackets are not the Key_Bracket keys.
        if event.text() == "[" or event.key() == Qt.Key.Key_BracketLeft:
            self.smaller_brush()
        elif event.text() == "]" or event.key() == Qt.Key.Key_BracketRight:
            self.larger_brush()
        elif event.key() == Qt.Key.Key_Escape and self._stroke is not None:
            self._cancel_stroke()
        else:
            super().keyPressEvent(event)
