"""Where the picture's cells lie on the canvas widget: square, whole device-independent
pixels (crisp edges at any zoom), centred in the space they are given."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QPainter, QPen


@dataclass(frozen=True)
class CellGrid:
    """`rows` x `cols` cells of `size` pixels each, the first one's corner at (left, top)."""

    rows: int
    cols: int
    size: int
    left: float
    top: float

    @classmethod
    def fitted(cls, shape: tuple[int, int], width: int, height: int) -> CellGrid:
        """The largest cells for a picture of `shape` (H, W) in width x height, centred."""
        rows, cols = shape
        height = max(rows, height)
        size = max(1, min(width // cols, height // rows))
        return cls(rows, cols, size, (width - cols * size) // 2, (height - rows * size) // 2)

    def image_rect(self) -> QRectF:
        return QRectF(self.left, self.top, self.cols * self.size, self.rows * self.size)

    def cell_under(self, point: QPointF) -> tuple[int, int]:
        """The cell under a point, even off the image (so lines can run over the edge)."""
        return (int(np.floor((point.y() - self.top) / self.size)),
                int(np.floor((point.x() - self.left) / self.size)))

    def cell_rect(self, row: int, col: int) -> QRectF:
        """Where pixel (row, col) is drawn."""
        return QRectF(self.left + col * self.size, self.top + row * self.size, self.size,
                      self.size)

    def cells_rect(self, first: tuple[int, int], last: tuple[int, int]) -> QRectF:
        """Where the rectangle of cells from `first` to `last` is drawn."""
        return self.cell_rect(*first).united(self.cell_rect(*last))

    def paint_lines(self, painter: QPainter, colour: QColor) -> None:
        """Lines between the cells, unless they are too small to show between them."""
        if self.size < 4:
            return  # the lines would hide the pixels
        left, top, size = self.left, self.top, self.size
        painter.setPen(QPen(colour, 0))  # cosmetic: one device pixel at any scale
        for col in range(1, self.cols):
            x = left + col * size
            painter.drawLine(QPointF(x, top), QPointF(x, top + self.rows * size))
        for row in range(1, self.rows):
            y = top + row * size
            painter.drawLine(QPointF(left, y), QPointF(left + self.cols * size, y))
