"""The insight panel: the distribution the current pixel is being drawn from."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QWidget

CHANNEL_NAMES = ("R", "G", "B")
CHANNEL_COLOURS = ("#e53935", "#43a047", "#1e88e5")


class DistributionView(QWidget):
    """A bar per value: p(ink) against p(background) for a binary model, a histogram over
    the levels for a grayscale one, and for a colour model over the levels of the channel
    being drawn, in that channel's colour. The sampled value's bar is highlighted."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.probs: np.ndarray | None = None
        self.picked: int | None = None
        self.channel: int | None = None  # R, G or B of a colour model
        self.caption = "No pixel is being sampled."
        self.setMinimumSize(180, 110)

    def show_distribution(self, probs: np.ndarray, picked: int, row: int, col: int,
                          channel: int = 0, channels: int = 1) -> None:
        self.probs = np.asarray(probs, float)
        self.picked = picked
        self.channel = channel if channels == 3 else None
        if len(self.probs) == 2 and channels == 1:
            self.caption = f"({row}, {col}): p(ink) = {self.probs[1]:.3f}"
        else:
            what = "level" if channels == 1 else CHANNEL_NAMES[channel]
            self.caption = f"({row}, {col}): drew {what} {picked} (p = {self.probs[picked]:.3f})"
        self.update()

    def clear(self) -> None:
        self.probs, self.picked, self.channel = None, None, None
        self.caption = "No pixel is being sampled."
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        text_height = painter.fontMetrics().height() + 4
        painter.drawText(QRectF(4, 2, self.width() - 8, text_height),
                         Qt.AlignmentFlag.AlignLeft, self.caption)
        if self.probs is None:
            return
        area = QRectF(4, text_height + 2, self.width() - 8, self.height() - text_height - 6)
        bar_width = area.width() / len(self.probs)
        for value, p in enumerate(self.probs):
            height = area.height() * float(p)
            if self.channel is None:
                color = QColor("#d95f02" if value == self.picked else "#7570b3")
            else:  # the channel's own colour: the drawn level solid, the others pale
                color = QColor(CHANNEL_COLOURS[self.channel])
                color.setAlpha(255 if value == self.picked else 90)
            painter.fillRect(QRectF(area.left() + value * bar_width, area.bottom() - height,
                                    max(1.0, bar_width - 1), height), color)
