"""Candidates side by side (like sketch-rnn's multi-predict grid); click one to adopt it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from .image_io import to_qimage

ON_CANVAS_COLOUR = QColor("#f2c12e")
FRAME_COLOUR = QColor("#888888")
GAP = 6  # between thumbnails, and around the grid
PICKED = "★"  # after the label of the candidate hole-aware completion picked
EMPTY_HINT = ("Candidates appear here: set Candidates above 1, or erase a hole with known "
              "pixels after it for hole-aware completion.")
CAPTION = (f"Framed: on the canvas · number·class · {PICKED} picked by hole-aware completion "
           "· click one to adopt it")


@dataclass(frozen=True)
class Cell:
    """Where one candidate is drawn: its thumbnail, and its label under it."""

    image: QRectF
    label: QRectF


class CandidateGallery(QWidget):
    """The candidates of the last completion, each labelled with its number and class; the
    one on the canvas is framed. It keeps its height whether it holds candidates or not, so
    the window around it never moves when they come and go."""

    adopted = Signal(int)  # the candidate the user clicked

    def __init__(self, parent=None):
        super().__init__(parent)
        self.images: np.ndarray | None = None  # (N, C, H, W)
        self.levels = 2
        self.chosen: int | None = None  # the candidate hole-aware completion picked
        self.on_canvas: int | None = None  # framed: the candidate the canvas shows
        self.classes: tuple = ()  # per candidate, the class it was completed as (or None)
        self.setMinimumHeight(130)
        self.setMouseTracking(True)

    def show_candidates(self, images: np.ndarray | None, levels: int,
                        chosen: int | None = None, classes=(),
                        on_canvas: int | None = None) -> None:
        """Show `images` ((N, C, H, W) levels; None or fewer than two: none)."""
        if images is not None and len(images) < 2:
            images = None
        self.images, self.levels, self.chosen = images, levels, chosen
        self.classes = tuple(classes)
        self.on_canvas = on_canvas
        self.update()

    def set_on_canvas(self, k: int | None) -> None:
        self.on_canvas = k
        self.update()

    def clear(self) -> None:
        self.show_candidates(None, self.levels)

    @property
    def count(self) -> int:
        return 0 if self.images is None else len(self.images)

    def label(self, k: int) -> str:
        """"4·7★": its number, the class it was completed as, and whether hole-aware
        completion picked it; short, to fit under a thumbnail of 16 in a row."""
        text = str(k + 1)
        if k < len(self.classes) and self.classes[k] is not None:
            text += f"·{self.classes[k]}"
        return text + (PICKED if k == self.chosen else "")

    # Layout

    def cells(self) -> list[Cell]:
        """The thumbnails in rows as even as can be (16 make 2 rows of 8, not 13 and 3), as
        large as the strip allows, each with its label beneath it, never over it."""
        n = self.count
        if n == 0:
            return []
        line = self.fontMetrics().height()
        top = line + GAP  # under the caption
        width, height = self.width() - GAP, self.height() - top
        label_width = max(self.fontMetrics().horizontalAdvance(self.label(k)) for k in range(n))

        def layout(rows: int) -> tuple[bool, int, int]:
            side = min(width / math.ceil(n / rows) - GAP, height / rows - line - GAP)
            return side + GAP >= label_width, round(side), -rows

        # Labels that fit first, then the largest thumbnails, then the fewest rows.
        _, side, rows = max(layout(rows) for rows in range(1, n + 1))
        rows = -rows
        side = max(4.0, math.floor(side))
        counts = [n // rows + (r < n % rows) for r in range(rows)]  # differ by one at most
        cells = []
        for r, count in enumerate(counts):
            left = (self.width() - count * (side + GAP) + GAP) / 2
            y = top + r * (side + line + GAP)
            for c in range(count):
                x = left + c * (side + GAP)
                cells.append(Cell(QRectF(x, y, side, side), QRectF(x - GAP / 2, y + side,
                                                                   side + GAP, line)))
        return cells

    # Painting and input

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        line = self.fontMetrics().height()
        caption = QRectF(GAP, 2, self.width() - 2 * GAP, line)
        painter.setPen(self.palette().placeholderText().color())
        if self.images is None:
            painter.drawText(self.rect().adjusted(GAP, GAP, -GAP, -GAP),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             EMPTY_HINT)
            return
        painter.drawText(caption, Qt.AlignmentFlag.AlignLeft,
                         self.fontMetrics().elidedText(CAPTION, Qt.TextElideMode.ElideRight,
                                                       int(caption.width())))
        for k, cell in enumerate(self.cells()):
            painter.drawImage(cell.image, to_qimage(self.images[k], self.levels))
            framed = k == self.on_canvas
            painter.setPen(QPen(ON_CANVAS_COLOUR if framed else FRAME_COLOUR, 3 if framed else 1))
            painter.drawRect(cell.image.adjusted(-1, -1, 1, 1))
            painter.setPen(self.palette().windowText().color())
            text = self.fontMetrics().elidedText(self.label(k), Qt.TextElideMode.ElideRight,
                                                 int(cell.label.width()))
            painter.drawText(cell.label, Qt.AlignmentFlag.AlignCenter, text)

    def candidate_at(self, point) -> int | None:
        for k, cell in enumerate(self.cells()):
            if cell.image.contains(point) or cell.label.contains(point):
                return k
        return None

    def mouseMoveEvent(self, event) -> None:
        k = self.candidate_at(event.position())
        self.setToolTip("" if k is None else
                        f"Candidate {self.label(k)}"
                        + (" (on the canvas)" if k == self.on_canvas else ": click to adopt it"))

    def mouseReleaseEvent(self, event) -> None:
        k = self.candidate_at(event.position())
        if k is not None:
            self.adopted.emit(k)
