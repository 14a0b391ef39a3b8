"""The insight panel: the distribution the current pixel is being drawn from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPolygonF
from PySide6.QtWidgets import QWidget

CHANNEL_NAMES = ("R", "G", "B")
CHANNEL_COLOURS = ("#e53935", "#43a047", "#1e88e5")
DRAWN_COLOUR = "#d95f02"
OTHER_COLOUR = "#7570b3"
TRACK_COLOUR = "#d8d8d8"
NO_PIXEL = "No pixel is being sampled."


@dataclass
class Chart:
    """What the panel draws, in widget coordinates: text (rect, text, alignment), filled
    rectangles (rect, colour), axis lines and the marker of the drawn value (a triangle's
    tip)."""

    texts: list[tuple[QRectF, str, Qt.AlignmentFlag]] = field(default_factory=list)
    fills: list[tuple[QRectF, QColor]] = field(default_factory=list)
    lines: list[tuple[QPointF, QPointF]] = field(default_factory=list)
    marker: QPointF | None = None

    def text(self) -> list[str]:
        return [text for _, text, _ in self.texts]


def nice_ceiling(p: float) -> float:
    """The top of a probability axis: 1, 2 or 5 times a power of ten at or above p."""
    p = max(float(p), 1e-3)
    power = 10 ** math.floor(math.log10(p))
    return min(1.0, next(m * power for m in (1, 2, 5, 10) if m * power >= p - 1e-12))


class DistributionView(QWidget):
    """For a binary model, p(ink) as a bar against a 0-1 axis with the drawn value marked;
    for K levels, the histogram over the levels (of the channel being drawn, in its colour)
    with its axes and the drawn level marked."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.probs: np.ndarray | None = None
        self.picked: int | None = None
        self.channel: int | None = None  # R, G or B of a colour model
        self.caption = NO_PIXEL
        self.setMinimumSize(200, 130)

    def show_distribution(self, probs: np.ndarray, picked: int, row: int, col: int,
                          channel: int = 0, channels: int = 1) -> None:
        self.probs = np.asarray(probs, float)
        self.picked = picked
        self.channel = channel if channels == 3 else None
        if self.is_binary:
            self.caption = f"({row}, {col}): p(ink) = {self.probs[1]:.3f}"  # drawn: marked
        else:
            what = "level" if channels == 1 else CHANNEL_NAMES[channel]
            self.caption = f"({row}, {col}): drew {what} {picked} (p = {self.probs[picked]:.3f})"
        self.update()

    def clear(self) -> None:
        self.probs, self.picked, self.channel = None, None, None
        self.caption = NO_PIXEL
        self.update()

    @property
    def is_binary(self) -> bool:
        return self.probs is not None and len(self.probs) == 2 and self.channel is None

    # Layout

    def chart(self) -> Chart:
        """Everything the panel shows at its current size."""
        chart = Chart()
        line = self.fontMetrics().height()
        chart.texts.append((QRectF(4, 2, self.width() - 8, line), self.caption,
                            Qt.AlignmentFlag.AlignLeft))
        if self.probs is not None:
            area = QRectF(4, line + 8, self.width() - 8, self.height() - line - 12)
            (self._binary_chart if self.is_binary else self._histogram)(chart, area, line)
        return chart

    def _binary_chart(self, chart: Chart, area: QRectF, line: int) -> None:
        metrics = self.fontMetrics()
        name = "p(ink)"
        name_width = metrics.horizontalAdvance(name) + 8
        top = area.top() + line + 9  # room above the bar for the marker and its label
        track = QRectF(area.left() + name_width, top, area.width() - name_width - 10,
                       min(2 * line, max(8.0, area.height() - 3 * line - 8)))
        chart.texts.append((QRectF(area.left(), track.top(), name_width - 4, track.height()),
                            name, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft))
        chart.fills.append((track, QColor(TRACK_COLOUR)))
        p_ink = float(self.probs[1])
        chart.fills.append((QRectF(track.left(), track.top(), track.width() * p_ink,
                                   track.height()), QColor(OTHER_COLOUR)))
        chart.lines.append((track.bottomLeft(), track.bottomRight()))
        for value in (0.0, 0.5, 1.0):
            x = track.left() + value * track.width()
            chart.lines.append((QPointF(x, track.bottom()), QPointF(x, track.bottom() + 3)))
            chart.texts.append(self._centred(f"{value:g}", x, track.bottom() + 3))
        # The drawn value: ink is 1 on the axis, background 0.
        x = track.left() + (1.0 if self.picked else 0.0) * track.width()
        chart.marker = QPointF(x, track.top() - 1)
        chart.texts.append(self._centred(f"drawn: {'ink' if self.picked else 'background'}",
                                         x, area.top()))

    def _histogram(self, chart: Chart, area: QRectF, line: int) -> None:
        metrics = self.fontMetrics()
        levels = len(self.probs)
        top_p = nice_ceiling(self.probs.max())
        top_label = f"{top_p:g}"
        axis_width = max(metrics.horizontalAdvance(top_label), metrics.horizontalAdvance("p"))
        # Room above the plot for the axis's name, clear of its top tick's label.
        top = area.top() + 1.5 * line + 2
        plot = QRectF(area.left() + axis_width + 6, top, area.width() - axis_width - 10,
                      area.bottom() - top - 2 * line - 4)
        # The y axis: p from 0 to a round number above the largest bar.
        chart.lines.append((plot.topLeft(), plot.bottomLeft()))
        chart.lines.append((plot.bottomLeft(), plot.bottomRight()))
        for p, text in ((top_p, top_label), (0.0, "0")):
            y = plot.bottom() - plot.height() * p / top_p
            chart.lines.append((QPointF(plot.left() - 3, y), QPointF(plot.left(), y)))
            chart.texts.append((QRectF(area.left(), y - line / 2, axis_width + 2, line), text,
                                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
        chart.texts.append((QRectF(area.left(), area.top(), axis_width + 2, line), "p",
                            Qt.AlignmentFlag.AlignRight))
        bar_width = plot.width() / levels
        for value, p in enumerate(self.probs):
            height = plot.height() * min(1.0, float(p) / top_p)
            chart.fills.append((QRectF(plot.left() + value * bar_width + 0.5,
                                       plot.bottom() - height, max(1.0, bar_width - 1), height),
                                self._bar_colour(value)))
        # The x axis: the levels, first, middle and last labelled, and what they are.
        for value in sorted({0, (levels - 1) // 2, levels - 1}):
            x = plot.left() + (value + 0.5) * bar_width
            chart.lines.append((QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 3)))
            chart.texts.append(self._centred(str(value), x, plot.bottom() + 3))
        name = "level" if self.channel is None else f"{CHANNEL_NAMES[self.channel]} level"
        chart.texts.append((QRectF(plot.left(), plot.bottom() + 3 + line, plot.width(), line),
                            name, Qt.AlignmentFlag.AlignCenter))
        drawn_top = plot.bottom() - plot.height() * min(1.0, self.probs[self.picked] / top_p)
        chart.marker = QPointF(plot.left() + (self.picked + 0.5) * bar_width, drawn_top - 1)

    def _centred(self, text: str, x: float, top: float) -> tuple[QRectF, str, Qt.AlignmentFlag]:
        """A label centred on x, moved inwards where it would cross the panel's edge."""
        metrics = self.fontMetrics()
        width = metrics.horizontalAdvance(text) + 4
        left = min(max(x - width / 2, 0.0), self.width() - width)
        return QRectF(left, top, width, metrics.height()), text, Qt.AlignmentFlag.AlignCenter

    def _bar_colour(self, value: int) -> QColor:
        if self.channel is None:
            return QColor(DRAWN_COLOUR if value == self.picked else OTHER_COLOUR)
        colour = QColor(CHANNEL_COLOURS[self.channel])  # the drawn level solid, others pale
        colour.setAlpha(255 if value == self.picked else 90)
        return colour

    # Painting

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        chart = self.chart()
        for rect, colour in chart.fills:
            painter.fillRect(rect, colour)
        painter.setPen(self.palette().text().color())
        for start, end in chart.lines:
            painter.drawLine(start, end)
        for rect, text, alignment in chart.texts:
            painter.drawText(rect, alignment, text)
        if chart.marker is not None:  # a small triangle pointing down at the drawn value
            tip = chart.marker
            painter.setBrush(QColor(DRAWN_COLOUR))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawPolygon(QPolygonF([tip, tip + QPointF(-5, -7), tip + QPointF(5, -7)]))
