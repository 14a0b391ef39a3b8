"""Candidates side by side (like sketch-rnn's multi-predict grid); click one to adopt it."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from .image_io import to_qimage


class CandidateGallery(QWidget):
    adopted = Signal(int)  # the candidate the user clicked

    def __init__(self, parent=None):
        super().__init__(parent)
        self.images: np.ndarray | None = None  # (N, C, H, W)
        self.levels = 2
        self.chosen: int | None = None  # framed: the candidate hole-aware completion kept
        self.classes: tuple = ()  # per candidate, the class it was completed as (or None)
        self.setMinimumHeight(120)
        self.setToolTip("Click a candidate to adopt it")

    def show_candidates(self, images: np.ndarray | None, levels: int,
                        chosen: int | None = None, classes=()) -> None:
        self.images, self.levels, self.chosen = images, levels, chosen
        self.classes = tuple(classes)
        self.setVisible(images is not None and len(images) > 1)
        self.update()

    def _cells(self) -> list[QRectF]:
        n = 0 if self.images is None else len(self.images)
        if n == 0:
            return []
        columns = math.ceil(math.sqrt(n * self.width() / max(1, self.height())))
        columns = max(1, min(n, columns))
        rows = math.ceil(n / columns)
        side = min(self.width() / columns, self.height() / rows)
        return [QRectF((k % columns) * side + 2, (k // columns) * side + 2, side - 4, side - 4)
                for k in range(n)]

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if self.images is None:
            return
        for k, cell in enumerate(self._cells()):
            painter.drawImage(cell, to_qimage(self.images[k], self.levels))
            kept = k == self.chosen
            painter.setPen(QPen(QColor("#f2c12e") if kept else QColor("#888888"), 3 if kept else 1))
            painter.drawRect(cell)
            label = f"{k + 1} kept" if kept else str(k + 1)
            if k < len(self.classes) and self.classes[k] is not None:
                label += f" · {self.classes[k]}"  # the class it was completed as
            painter.drawText(cell.adjusted(3, 1, 0, 0), Qt.AlignmentFlag.AlignTop, label)

    def mouseReleaseEvent(self, event) -> None:
        for k, cell in enumerate(self._cells()):
            if cell.contains(event.position()):
                self.adopted.emit(k)
                return
