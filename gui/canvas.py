"""The zoomed pixel canvas: shows a `Drawing` and lets the user draw, erase and undo on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QUndoStack,
)
from PySide6.QtWidgets import QWidget

from model.images import display_values

from .document import Drawing, DrawingEdit, Snapshot

TOOLS = ("pen", "eraser", "rect_erase", "erase_below")
MIN_BRUSH, MAX_BRUSH = 1, 5

BACKGROUND = QColor(45, 45, 48)
UNKNOWN_TONES = np.array([[150, 150, 150], [105, 105, 105]], np.uint8)  # light, dark
GRID_COLOUR = QColor(128, 128, 128, 90)
CURSOR_COLOUR = QColor(0, 200, 255)
PREVIEW_COLOUR = QColor(255, 190, 0)
LEGEND_TEXT = QColor(225, 225, 225)
# The heatmap's colour scale (viridis), over the picture greyed and dimmed: its colours are
# then the only colours on the canvas, never to be taken for an emoji's own reds.
HEATMAP_STOPS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98),
                          (253, 231, 37)], float)
HEATMAP_ALPHA = 190  # the greyed strokes still show through, faintly
UNDER_HEATMAP_BRIGHTNESS = 0.6


DEFAULT_BRUSH_SIZE = 3


def shown_rgb(values: np.ndarray, known: np.ndarray, levels: int) -> np.ndarray:
    """(2H, 2W, 3) uint8: pixels as the canvas shows them, at twice their resolution so each
    is 2x2 sub-squares: a known pixel fills all four with its colour, an unknown one shows a
    two-tone checkerboard. The GIF export draws its frames with this too."""
    # The saved PNG's greys (model.images.display_values): what is seen is what is saved.
    rgb = display_values(levels)[np.minimum(values, levels - 1)].transpose(1, 2, 0)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    doubled = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)
    unknown = np.repeat(np.repeat(~np.asarray(known, bool), 2, axis=0), 2, axis=1)
    rows, cols = np.indices(unknown.shape)
    checker = UNKNOWN_TONES[(rows + cols) % 2]
    doubled[unknown] = checker[unknown]
    return np.ascontiguousarray(doubled)


def drawing_image(drawing: Drawing, greyed: bool = False) -> QImage:
    """The drawing as the canvas shows it (see shown_rgb); `greyed` keeps only the known
    pixels' brightness, dimmed, under the heatmap, whose colours must not be mistaken for
    the picture's own."""
    rgb = shown_rgb(drawing.values, drawing.known, drawing.levels)
    if greyed:  # the known pixels only: the unknown ones keep their checkerboard
        known = np.repeat(np.repeat(drawing.known, 2, axis=0), 2, axis=1)
        grey = (rgb[known] @ np.array([0.299, 0.587, 0.114])) * UNDER_HEATMAP_BRIGHTNESS
        rgb[known] = grey.astype(np.uint8)[:, None]
    return _rgb_image(rgb, QImage.Format.Format_RGB888)


def heatmap_colours(strength: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours of the heatmap's scale for strengths in [0, 1] (viridis: dark
    violet through teal to yellow, ordered in brightness, readable without colour vision)."""
    strength = np.clip(np.nan_to_num(np.asarray(strength, float), nan=0.0), 0.0, 1.0)
    positions = np.linspace(0.0, 1.0, len(HEATMAP_STOPS))
    return np.stack([np.interp(strength, positions, HEATMAP_STOPS[:, channel])
                     for channel in range(3)], axis=-1).round().astype(np.uint8)


def heatmap_image(nats: np.ndarray, scale: float) -> QImage:
    """Each pixel with a value in its colour of the scale (0 .. `scale` nats, more clipped
    to the top), nearly opaque; pixels without one (NaN: unknown) transparent."""
    has_value = np.isfinite(nats)
    rgba = np.zeros(nats.shape + (4,), np.uint8)
    rgba[..., :3] = heatmap_colours(np.where(has_value, nats, 0.0) / scale)
    rgba[..., 3] = np.where(has_value, HEATMAP_ALPHA, 0)
    return _rgb_image(rgba, QImage.Format.Format_RGBA8888)


def _rgb_image(pixels: np.ndarray, image_format: QImage.Format) -> QImage:
    height, width, depth = pixels.shape
    # copy(): the QImage must own its pixels, not borrow a buffer that is about to go away.
    return QImage(pixels.tobytes(), width, height, width * depth, image_format).copy()


def line_cells(start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """The cells of a Bresenham line from start to end (row, col), both included."""
    (row, col), (end_row, end_col) = start, end
    d_col, d_row = abs(end_col - col), -abs(end_row - row)
    step_col = 1 if col < end_col else -1
    step_row = 1 if row < end_row else -1
    error = d_col + d_row
    cells = [(row, col)]
    while (row, col) != (end_row, end_col):
        doubled = 2 * error
        if doubled >= d_row:
            error += d_row
            col += step_col
        if doubled <= d_col:
            error += d_col
            row += step_row
        cells.append((row, col))
    return cells


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
        self._heatmap: np.ndarray | None = None  # (H, W) nats, NaN where there is none
        self._heatmap_scale = 1.0  # nats at the top of the colour scale
        self._heatmap_marks: tuple[tuple[float, str], ...] = ()  # (nats, name) on the scale
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
            self._heatmap = None
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
        if nats is not None:
            nats = np.asarray(nats, float)
            if nats.shape != self._drawing.known.shape:
                raise ValueError(f"A heatmap of shape {nats.shape} does not fit a "
                                 f"{self._drawing.height}x{self._drawing.width} drawing.")
            if not scale > 0:
                raise ValueError(f"The heatmap's scale must be above 0 nats, not {scale}.")
        self._heatmap, self._heatmap_scale, self._heatmap_marks = nats, float(scale), marks
        self.update()

    @property
    def heatmap(self) -> np.ndarray | None:
        return self._heatmap

    def heatmap_readout(self) -> str:
        """What the legend says about the pixel under the mouse."""
        if self._heatmap is None:
            return ""
        if self._hover_cell is None or not self._inside(self._hover_cell):
            return "Point at a pixel to read its surprise."
        row, col = self._hover_cell
        nats = self._heatmap[row, col]
        if not np.isfinite(nats):
            return f"({row}, {col}): unknown, nothing to measure"
        return f"({row}, {col}): {nats:.2f} nats (p = {np.exp(-nats):.3g})"

    def legend_ticks(self) -> list[tuple[float, str]]:
        """The labelled positions of the legend's colour scale, (nats, text), left to right."""
        scale = self._heatmap_scale
        ticks = [(0.0, "0"), *((v, f"{v:.2f} {name}") for v, name in self._heatmap_marks
                               if 0 < v < scale), (scale, f"≥ {scale:.2f} nats")]
        return sorted(ticks)

    def legend_rect(self) -> QRectF:
        """Where the heatmap's legend is drawn (empty without a heatmap)."""
        if self._heatmap is None:
            return QRectF()
        height = self._legend_height()
        return QRectF(0, self.height() - height, self.width(), height)

    def _legend_height(self) -> int:
        return 0 if self._heatmap is None else 3 * self.fontMetrics().height() + 16

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

    def _layout(self) -> tuple[int, float, float]:
        """The cell size (whole device-independent pixels, for crisp edges) and the top-left
        corner of the image, centred above the heatmap's legend when there is one."""
        rows, cols = self._drawing.known.shape
        height = max(rows, self.height() - self._legend_height())
        cell = max(1, min(self.width() // cols, height // rows))
        return cell, (self.width() - cols * cell) // 2, (height - rows * cell) // 2

    def _image_rect(self) -> QRectF:
        cell, left, top = self._layout()
        rows, cols = self._drawing.known.shape
        return QRectF(left, top, cols * cell, rows * cell)

    def _cell_under(self, point: QPointF) -> tuple[int, int]:
        """The cell under a point, even off the image (so lines can run over the edge)."""
        cell, left, top = self._layout()
        return int(np.floor((point.y() - top) / cell)), int(np.floor((point.x() - left) / cell))

    def _inside(self, cell: tuple[int, int]) -> bool:
        rows, cols = self._drawing.known.shape
        return 0 <= cell[0] < rows and 0 <= cell[1] < cols

    def cell_at(self, point: QPointF) -> tuple[int, int] | None:
        """The (row, col) of the image pixel under a widget point, or None off the image."""
        cell = self._cell_under(QPointF(point))
        return cell if self._inside(cell) else None

    def cell_rect(self, row: int, col: int) -> QRectF:
        """Where pixel (row, col) is drawn, in widget coordinates."""
        cell, left, top = self._layout()
        return QRectF(left + col * cell, top + row * cell, cell, cell)

    def _cells_rect(self, first: tuple[int, int], last: tuple[int, int]) -> QRectF:
        return self.cell_rect(*first).united(self.cell_rect(*last))

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
        target = self._image_rect()
        painter.drawImage(target, drawing_image(self._drawing, greyed=self._heatmap is not None))
        if self._heatmap is not None:
            painter.drawImage(target, heatmap_image(self._heatmap, self._heatmap_scale))
            self._paint_legend(painter)
            if self._hovered_nats() is not None:  # the pixel the legend reads out
                painter.setPen(QPen(QColor("white"), 1))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(self.cell_rect(*self._hover_cell).adjusted(0, 0, -1, -1))
        if self._grid_visible:
            self._paint_grid(painter)
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

    def _paint_legend(self, painter: QPainter) -> None:
        """Under the image: what the colours mean, the scale itself with its ticks, and the
        value of the pixel under the mouse (marked on the scale)."""
        area = self.legend_rect().adjusted(8, 4, -8, -4)
        line = self.fontMetrics().height()
        painter.setPen(LEGEND_TEXT)
        painter.drawText(QRectF(area.left(), area.top(), area.width(), line),
                         Qt.AlignmentFlag.AlignLeft, "Surprise −log p, nats per pixel")
        painter.drawText(QRectF(area.left(), area.top(), area.width(), line),
                         Qt.AlignmentFlag.AlignRight, self.heatmap_readout())
        bar = self._legend_bar()
        strengths = np.linspace(0.0, 1.0, max(2, int(bar.width())))
        colours = heatmap_colours(strengths)[None]  # one row, stretched to the bar's height
        painter.drawImage(bar, _rgb_image(np.ascontiguousarray(colours),
                                          QImage.Format.Format_RGB888))
        for nats, text in self.legend_ticks():
            x = self._legend_x(nats)
            painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
            width = self.fontMetrics().horizontalAdvance(text) + 2
            left = min(max(x - width / 2, area.left()), area.right() - width)
            painter.drawText(QRectF(left, bar.bottom() + 3, width, line),
                             Qt.AlignmentFlag.AlignCenter, text)
        hovered = self._hovered_nats()
        if hovered is not None:  # a marker on the scale at the hovered pixel's value
            x = self._legend_x(min(hovered, self._heatmap_scale))
            painter.setPen(QPen(QColor("white"), 2))
            painter.drawLine(QPointF(x, bar.top() - 2), QPointF(x, bar.bottom() + 2))

    def _legend_bar(self) -> QRectF:
        area = self.legend_rect().adjusted(8, 4, -8, -4)
        line = self.fontMetrics().height()
        return QRectF(area.left(), area.top() + line + 3, area.width(), line - 2)

    def _legend_x(self, nats: float) -> float:
        bar = self._legend_bar()
        return bar.left() + bar.width() * min(1.0, max(0.0, nats / self._heatmap_scale))

    def _hovered_nats(self) -> float | None:
        if self._heatmap is None or self._hover_cell is None or not self._inside(
                self._hover_cell):
            return None
        nats = float(self._heatmap[self._hover_cell])
        return nats if np.isfinite(nats) else None

    def _paint_grid(self, painter: QPainter) -> None:
        cell, left, top = self._layout()
        if cell < 4:
            return  # the lines would hide the pixels
        rows, cols = self._drawing.known.shape
        painter.setPen(QPen(GRID_COLOUR, 0))  # cosmetic: one device pixel at any scale
        for col in range(1, cols):
            x = left + col * cell
            painter.drawLine(QPointF(x, top), QPointF(x, top + rows * cell))
        for row in range(1, rows):
            y = top + row * cell
            painter.drawLine(QPointF(left, y), QPointF(left + cols * cell, y))

    def _preview_rect(self) -> QRectF | None:
        """The outline of what a click or the current drag would change."""
        rows, cols = self._drawing.known.shape
        if self._stroke is not None and self._stroke.action == "rect_erase":
            first, last = self._clipped_rect(self._stroke.start, self._stroke.last)
            return None if first is None else self._cells_rect(first, last)
        if self._read_only or self._hover_cell is None or self._stroke is not None:
            return None
        row, col = self._hover_cell
        if self._tool == "erase_below":
            return self._cells_rect((row, 0), (rows - 1, cols - 1))
        if self._tool in ("pen", "eraser"):
            first, last = self._clipped_rect(*self._brush_corners(row, col))
            return None if first is None else self._cells_rect(first, last)
        return None

    # Editing the pixels

    def _brush_corners(self, row: int, col: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """A square brush centred on the cell (even sizes reach one further down-right)."""
        back = (self._brush_size - 1) // 2
        forward = self._brush_size - 1 - back
        return (row - back, col - back), (row + forward, col + forward)

    def _clipped_rect(self, a: tuple[int, int], b: tuple[int, int]):
        """The corners of the cell rectangle spanned by a and b, clipped to the image, or
        (None, None) when none of it lies on the image."""
        rows, cols = self._drawing.known.shape
        top, bottom = max(min(a[0], b[0]), 0), min(max(a[0], b[0]), rows - 1)
        left, right = max(min(a[1], b[1]), 0), min(max(a[1], b[1]), cols - 1)
        if top > bottom or left > right:
            return None, None
        return (top, left), (bottom, right)

    def _set_cells(self, first, last, known: bool, value) -> bool:
        """Set a clipped rectangle of cells to `value` (a level, or (C, 1, 1) levels, one per
        channel); True if any pixel changed."""
        first, last = self._clipped_rect(first, last)
        if first is None:
            return False
        rows = slice(first[0], last[0] + 1)
        cols = slice(first[1], last[1] + 1)
        values, known_mask = self._drawing.values[:, rows, cols], self._drawing.known[rows, cols]
        if (values == value).all() and (known_mask == known).all():
            return False
        values[...] = value
        known_mask[...] = known
        return True

    def _paint_line(self, start: tuple[int, int], end: tuple[int, int], action: str) -> bool:
        erase = action == "eraser"
        value = 0 if erase else self._pen_levels()
        changed = False
        for row, col in line_cells(start, end):
            first, last = self._brush_corners(row, col)
            changed |= self._set_cells(first, last, not erase, value)
        return changed

    # Strokes

    def _begin_stroke(self, event: QMouseEvent) -> None:
        cell = self._cell_under(event.position())
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
                self._set_cells((cell[0], 0), (rows - 1, cols - 1), False, 0)
                self.push_edit(before, "Erase below")
            return
        self._stroke = _Stroke(button, action, self._drawing.snapshot(), cell, cell)
        if action == "rect_erase":
            self.update()
        elif self._paint_line(cell, cell, action):
            self._contents_changed()

    def _continue_stroke(self, event: QMouseEvent) -> None:
        stroke = self._stroke
        cell = self._cell_under(event.position())
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
            self._set_cells(stroke.start, stroke.last, False, 0)
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
