"""The "How it works" window: what the model can see from the pixel under the mouse, the
masks its kernels carry, and the tutorial's 3x4 raster-order example, animated.

It follows the main window: the canvas's `hovered` signal moves the pixel, and the model is
asked for again (a cheap identity check) whenever the window is shown, activated or hovered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QEvent, QRectF, QSize, Qt, QTimer, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QApplication,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from model.receptive import (
    BLIND_SPOT,
    CURRENT,
    NOT_YET,
    OUT_OF_REACH,
    SEEN,
    Kernel,
    ReceptiveField,
    kernels,
)

from .canvas import PixelCanvas

BACKGROUND = QColor(45, 45, 48)
TEXT = QColor(230, 230, 230)
COLOURS = {
    NOT_YET: QColor(62, 62, 66),
    SEEN: QColor(66, 146, 214),
    BLIND_SPOT: QColor(230, 110, 20),
    OUT_OF_REACH: QColor(112, 112, 118),
    CURRENT: QColor(255, 204, 0),
}
LEGEND = (
    (CURRENT, "being predicted"),
    (SEEN, "seen (gradient ≠ 0)"),
    (BLIND_SPOT, "blind spot: earlier, unseen"),
    (OUT_OF_REACH, "earlier, out of reach"),
    (NOT_YET, "not drawn yet"),
)
MASKED = QColor(30, 30, 32)  # a kernel tap that the mask sets to zero


def _crisp_cell(rect: QRectF, cell: float) -> QRectF:
    """Leave a one-pixel seam between cells once they are big enough to show it."""
    return rect.adjusted(0, 0, -1, -1) if cell >= 6 else rect


def _fill(painter: QPainter, rect: QRectF, code: int) -> None:
    painter.fillRect(rect, COLOURS[code])
    if code == BLIND_SPOT:  # hatched too, so it does not rely on colour alone
        painter.fillRect(rect, QBrush(QColor(0, 0, 0, 110), Qt.BrushStyle.BDiagPattern))


class FieldView(QWidget):
    """The image at model size, every pixel coloured by what it is to the current pixel;
    the drawing's known ink shows as a light dot in each cell."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.codes: np.ndarray | None = None
        self.ink: np.ndarray | None = None
        self.setMinimumSize(220, 260)

    def set_field(self, codes: np.ndarray | None, ink: np.ndarray | None = None) -> None:
        self.codes, self.ink = codes, ink
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(380, 440)

    def _legend_height(self) -> int:
        return len(LEGEND) * (self.fontMetrics().height() + 3) + 6

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if self.codes is None:
            painter.setPen(TEXT)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No model.")
            return
        rows, cols = self.codes.shape
        legend = self._legend_height()
        cell = max(1, min(self.width() // cols, (self.height() - legend) // rows))
        left = (self.width() - cols * cell) // 2
        for r in range(rows):
            for c in range(cols):
                rect = _crisp_cell(QRectF(left + c * cell, r * cell, cell, cell), cell)
                _fill(painter, rect, int(self.codes[r, c]))
                if self.ink is not None and self.ink[r, c] > 0 and cell >= 4:
                    dot = QColor(255, 255, 255, int(40 + 200 * self.ink[r, c]))
                    inset = cell * 0.3
                    painter.fillRect(rect.adjusted(inset, inset, -inset, -inset), dot)
        self._paint_legend(painter, QRectF(left, rows * cell + 6, self.width() - left, legend))

    def _paint_legend(self, painter: QPainter, area: QRectF) -> None:
        metrics = self.fontMetrics()
        line = metrics.height() + 3
        counts = {code: int((self.codes == code).sum()) for code, _ in LEGEND}
        for index, (code, text) in enumerate(LEGEND):
            top = area.top() + index * line
            swatch = QRectF(area.left(), top + 2, line - 5, line - 5)
            _fill(painter, swatch, code)
            painter.setPen(TEXT)
            label = text if code == CURRENT else f"{text}: {counts[code]}"
            painter.drawText(QRectF(swatch.right() + 6, top, area.width(), line),
                             Qt.AlignmentFlag.AlignVCenter, label)


class KernelsView(QWidget):
    """Each kernel as a grid in a square frame centred on the pixel it computes: used
    weights blue, masked ones dark, outside the kernel's shape empty; the pixel outlined."""

    COLUMNS = 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self.kernels: list[Kernel] = []

    def set_kernels(self, found: list[Kernel]) -> None:
        self.kernels = found
        self.updateGeometry()
        self.update()

    def _cell(self) -> int:
        return max(12, self.fontMetrics().height())

    def _column_width(self) -> int:
        bold = QFont(self.font())
        bold.setBold(True)
        titles = QFontMetrics(bold)
        widths = [max(k.taps.shape[1] * self._cell(), titles.horizontalAdvance(k.title))
                  for k in self.kernels]
        return max(170, *widths) if widths else 170

    def _block_height(self, kernel: Kernel) -> int:
        metrics = self.fontMetrics()
        note = metrics.boundingRect(0, 0, self._column_width(), 1000,
                                    int(Qt.TextFlag.TextWordWrap), kernel.note)
        return metrics.height() + 4 + kernel.taps.shape[0] * self._cell() + 4 + note.height()

    def _row_heights(self) -> list[int]:
        heights = []
        for start in range(0, len(self.kernels), self.COLUMNS):
            row = self.kernels[start:start + self.COLUMNS]
            heights.append(max(self._block_height(k) for k in row) + 12)
        return heights

    def sizeHint(self) -> QSize:
        return QSize(self.COLUMNS * (self._column_width() + 12), sum(self._row_heights()) or 60)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        if not self.kernels:
            painter.setPen(TEXT)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No model.")
            return
        width, top = self._column_width(), 4
        for row_index, height in enumerate(self._row_heights()):
            start = row_index * self.COLUMNS
            for column, kernel in enumerate(self.kernels[start:start + self.COLUMNS]):
                self._paint_kernel(painter, kernel, QRectF(4 + column * (width + 12), top,
                                                           width, height))
            top += height

    def _paint_kernel(self, painter: QPainter, kernel: Kernel, area: QRectF) -> None:
        metrics = self.fontMetrics()
        bold = QFont(self.font())
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(TEXT)
        painter.drawText(QRectF(area.left(), area.top(), area.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignLeft, kernel.title)
        painter.setFont(self.font())
        cell = self._cell()
        rows, cols = kernel.taps.shape
        top = area.top() + metrics.height() + 4
        for r in range(rows):
            for c in range(cols):
                rect = QRectF(area.left() + c * cell, top + r * cell, cell, cell).adjusted(
                    0, 0, -1, -1)
                tap = kernel.taps[r, c]
                if np.isnan(tap):
                    painter.setPen(QPen(QColor(90, 90, 95), 0, Qt.PenStyle.DotLine))
                    painter.setBrush(Qt.BrushStyle.NoBrush)
                    painter.drawRect(rect.adjusted(0, 0, -1, -1))
                else:
                    painter.fillRect(rect, COLOURS[SEEN] if tap else MASKED)
        centre = QRectF(area.left() + (cols // 2) * cell, top + (rows // 2) * cell, cell, cell)
        painter.setPen(QPen(COLOURS[CURRENT], 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(centre.adjusted(1, 1, -2, -2))
        painter.setPen(TEXT)
        painter.drawText(QRectF(area.left(), top + rows * cell + 4, area.width(), 1000),
                         int(Qt.TextFlag.TextWordWrap), kernel.note)


class RasterDemo(QWidget):
    """The tutorial's 3x4 example: pixels 1-12 drawn in raster order, each predicted from
    the ones before it (pixel 12 from 1-11), one step per timer tick."""

    ROWS, COLS = 3, 4
    DONE = ROWS * COLS + 1  # the step after the last pixel: everything drawn

    def __init__(self, interval_ms: int = 700, parent=None):
        super().__init__(parent)
        self.step = 1  # the pixel being predicted, or DONE
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.advance)
        self.setMinimumSize(4 * 36 + 8, 3 * 36 + 2 * self.fontMetrics().height() + 16)

    @property
    def current(self) -> int | None:
        """The pixel (1-12) being predicted, or None once all are drawn."""
        return self.step if self.step < self.DONE else None

    def context(self) -> list[int]:
        """The pixels already drawn, which the current prediction may use."""
        return list(range(1, min(self.step, self.DONE)))

    def caption(self) -> str:
        k = self.current
        if k is None:
            return "Done: twelve pixels, one network pass each."
        if k == 1:
            return "Pixel 1 is predicted from an empty image."
        if k == 2:
            return "Pixel 2 is predicted from pixel 1."
        return f"Pixel {k} is predicted from pixels 1–{k - 1}."

    @Slot()
    def replay(self) -> None:
        self.step = 1
        self.timer.start()
        self.update()

    @Slot()
    def advance(self) -> None:
        if self.step < self.DONE:
            self.step += 1
        if self.step >= self.DONE:
            self.timer.stop()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(4 * 48 + 8, 3 * 48 + 2 * self.fontMetrics().height() + 16)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        painter.fillRect(self.rect(), BACKGROUND)
        line = self.fontMetrics().height()
        cell = max(8, min(56, (self.width() - 8) // self.COLS,
                          (self.height() - 2 * line - 16) // self.ROWS))
        left = (self.width() - self.COLS * cell) // 2
        number_font = QFont(self.font())
        number_font.setBold(True)
        number_font.setPixelSize(max(8, cell // 3))
        for index in range(self.ROWS * self.COLS):
            pixel = index + 1
            row, col = divmod(index, self.COLS)
            rect = QRectF(left + col * cell, 4 + row * cell, cell, cell).adjusted(1, 1, -1, -1)
            if pixel == self.current:
                code, text = CURRENT, "?"
            elif pixel < self.step:
                code, text = SEEN, str(pixel)
            else:
                code, text = NOT_YET, str(pixel)
            painter.fillRect(rect, COLOURS[code])
            painter.setFont(number_font)
            painter.setPen(QColor(20, 20, 20) if code == CURRENT else
                           TEXT if code == SEEN else QColor(140, 140, 145))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        painter.setFont(self.font())
        painter.setPen(TEXT)
        painter.drawText(QRectF(0, 4 + self.ROWS * cell + 6, self.width(), 2 * line + 4),
                         Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap,
                         self.caption())


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class HowItWorksWindow(QWidget):
    """A non-modal window beside the main one. `current_model` returns the model the main
    window holds now (or None); the canvas's `hovered` signal picks the pixel."""

    def __init__(self, canvas: PixelCanvas, current_model: Callable[[], object],
                 parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("How it works — PixelCNN Studio")
        self.canvas = canvas
        self.current_model = current_model
        self.field: ReceptiveField | None = None
        self.position: tuple[int, int] | None = None
        self._pending: tuple[int, int] | None = None  # the pixel to show next
        # Hover events arrive faster than a gradient pass: compute only the latest one.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.timeout.connect(self._refresh_field)

        self.field_view = FieldView()
        self.field_caption = _note("")
        self.kernels_view = KernelsView()
        self.kernels_caption = _note("")
        self.raster = RasterDemo()
        replay = QPushButton("Replay")
        replay.setToolTip("Play the raster-order example again")
        replay.clicked.connect(self.raster.replay)
        self._build_layout(replay)
        self.resize(980, 640)

        canvas.hovered.connect(self.hover)
        canvas.edited.connect(self._drawing_edited)
        self.sync_model()

    def _build_layout(self, replay: QPushButton) -> None:
        sees = QGroupBox("What the model sees")
        box = QVBoxLayout(sees)
        box.addWidget(_note("Back-propagated from the logits at the pixel under the mouse: "
                            "an input pixel is seen when its gradient is not zero."))
        box.addWidget(self.field_caption)
        box.addWidget(self.field_view, 1)

        masks = QGroupBox("Masks")
        box = QVBoxLayout(masks)
        box.addWidget(self.kernels_caption)
        box.addWidget(self.kernels_view)
        box.addStretch(1)

        order = QGroupBox("Raster order (the tutorial's example)")
        box = QGridLayout(order)
        box.addWidget(self.raster, 0, 0, 1, 2)
        box.addWidget(replay, 1, 1)
        box.setColumnStretch(0, 1)

        right = QVBoxLayout()
        right.addWidget(masks)
        right.addWidget(order, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(sees, 1)
        layout.addLayout(right)

    # Following the main window

    @Slot()
    def sync_model(self) -> None:
        """Take up the main window's current model if it changed."""
        model = self.current_model()
        if self.field is not None and model is self.field.model:
            return
        self.set_model(model)

    def set_model(self, model) -> None:
        self.field = None if model is None else ReceptiveField(model)
        found = [] if model is None else kernels(model)
        self.kernels_view.set_kernels(found)
        if model is None:
            self.kernels_caption.setText("")
            self.position = None
        else:
            cfg = model.config
            kind = ("classic PixelCNN: square masked kernels" if cfg.architecture == "pixelcnn"
                    else "gated PixelCNN: a vertical and a horizontal stack")
            colour = " Colour models: R from R shown." if cfg.channels > 1 else ""
            self.kernels_caption.setText(
                f"Read from this model ({kind}). Blue: weight used; dark: masked to zero; "
                f"outlined: the pixel being computed.{colour}")
            if self.position is None or not (self.position[0] < cfg.height
                                             and self.position[1] < cfg.width):
                self.position = (cfg.height // 2, cfg.width // 2)
        self._pending = self.position
        self._refresh_field()

    @Slot(int, int)
    def hover(self, row: int, col: int) -> None:
        """Show the field of (row, col); off the image (-1, -1) keeps the last pixel."""
        if not self.isVisible():
            return  # showing the window catches up
        self.sync_model()
        if self.field is None or not (0 <= row < self.field.shape[0]
                                      and 0 <= col < self.field.shape[1]):
            return
        self._pending = (row, col)
        self._refresh_timer.start(0)

    @Slot()
    def _drawing_edited(self) -> None:
        if not self.isVisible():
            return
        self.sync_model()
        self._refresh_timer.start(0)  # the same pixel (or the one hovered last), new ink

    def _ink(self) -> np.ndarray | None:
        drawing = self.canvas.drawing
        if self.field is None or drawing.known.shape != self.field.shape:
            return None
        ink = drawing.values.mean(axis=0) / (drawing.levels - 1)
        return np.where(drawing.known, ink, 0.0)

    @Slot()
    def _refresh_field(self) -> None:
        if self.field is None or self._pending is None:
            self.field_view.set_field(None)
            self.field_caption.setText("")
            return
        row, col = self._pending
        if (QApplication.mouseButtons() != Qt.MouseButton.NoButton
                and not self.field.is_cached(row, col)):
            # A stroke is being drawn: a gradient pass per cell would make it stutter.
            self._refresh_timer.start(150)
            return
        self.position = (row, col)
        codes = self.field.field_map(row, col)
        self.field_view.set_field(codes, self._ink())
        earlier = row * codes.shape[1] + col
        visible = self.field.visible(row, col).ravel()
        seen_before, seen_after = int(visible[:earlier].sum()), int(visible[earlier:].sum())
        blind = int((codes == BLIND_SPOT).sum())
        spot = (f"{blind} in its blind spot, above and to the right" if blind
                else "it has no blind spot")
        after = ("nothing at or after it" if not seen_after else
                 f"but it also sees {seen_after} pixel(s) at or after it: a mask leaks")
        self.field_caption.setText(
            f"Pixel ({row}, {col}), number {earlier + 1} in raster order: the model sees "
            f"{seen_before} of the {earlier} pixels before it; {spot}; {after}.")

    def showEvent(self, event) -> None:
        self.sync_model()
        self._drawing_edited()  # the drawing may have changed while hidden
        if not event.spontaneous():  # opened, not just restored from the task bar
            self.raster.replay()
        super().showEvent(event)

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow():
            self.sync_model()
        super().changeEvent(event)
