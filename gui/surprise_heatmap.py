"""The surprise heatmap over the canvas: each known pixel's -log p on a colour scale, and a
legend under the image that names the scale and reads out the pixel under the mouse."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPen

from .brush import on_image
from .pixel_images import rgb_image

LEGEND_TEXT = QColor(225, 225, 225)
# The heatmap's colour scale (viridis), over the picture greyed and dimmed: its colours are
# then the only colours on the canvas, never to be taken for an emoji's own reds.
HEATMAP_STOPS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98),
                          (253, 231, 37)], float)
HEATMAP_ALPHA = 190  # the greyed strokes still show through, faintly


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
    return rgb_image(rgba, QImage.Format.Format_RGBA8888)


class SurpriseHeatmap:
    """What the canvas shows of the heatmap (nothing while `nats` is None), and its painting.

    The canvas owns one, tells it the picture's and the legend's places and the cell under
    the mouse, and keeps the geometry (which cell lies where) to itself.
    """

    def __init__(self):
        self.nats: np.ndarray | None = None  # (H, W), NaN where there is no value
        self.scale = 1.0  # nats at the top of the colour scale
        self.marks: tuple[tuple[float, str], ...] = ()  # (nats, name) placed on the scale

    @property
    def is_shown(self) -> bool:
        return self.nats is not None

    def show(self, nats: np.ndarray | None, scale: float, marks: tuple[tuple[float, str], ...],
             shape: tuple[int, int]) -> None:
        """Show `nats` for a picture of `shape` (H, W); None hides the heatmap."""
        if nats is not None:
            nats = np.asarray(nats, float)
            if nats.shape != shape:
                raise ValueError(f"A heatmap of shape {nats.shape} does not fit a "
                                 f"{shape[0]}x{shape[1]} drawing.")
            if not scale > 0:
                raise ValueError(f"The heatmap's scale must be above 0 nats, not {scale}.")
        self.nats, self.scale, self.marks = nats, float(scale), marks

    def hide(self) -> None:
        self.nats = None

    def value_at(self, cell: tuple[int, int] | None) -> float | None:
        """The nats of a pixel with a value; None off the image, unknown, or hidden."""
        if self.nats is None or not on_image(cell, self.nats.shape):
            return None
        nats = float(self.nats[cell])
        return nats if np.isfinite(nats) else None

    def readout(self, cell: tuple[int, int] | None) -> str:
        """What the legend says about the pixel `cell` (the one under the mouse)."""
        if self.nats is None:
            return ""
        if not on_image(cell, self.nats.shape):
            return "Point at a pixel to read its surprise."
        row, col = cell
        nats = self.nats[row, col]
        if not np.isfinite(nats):
            return f"({row}, {col}): unknown, nothing to measure"
        return f"({row}, {col}): {nats:.2f} nats (p = {np.exp(-nats):.3g})"

    def ticks(self) -> list[tuple[float, str]]:
        """The labelled positions of the legend's colour scale, (nats, text), left to right."""
        scale = self.scale
        ticks = [(0.0, "0"), *((v, f"{v:.2f} {name}") for v, name in self.marks
                               if 0 < v < scale), (scale, f"≥ {scale:.2f} nats")]
        return sorted(ticks)

    def legend_height(self, metrics: QFontMetrics) -> int:
        """The legend's height under the image; 0 while hidden."""
        return 0 if self.nats is None else 3 * metrics.height() + 16

    def paint(self, painter: QPainter, image: QRectF, legend: QRectF, metrics: QFontMetrics,
              hovered: tuple[int, int] | None,
              cell_rect: Callable[[int, int], QRectF]) -> None:
        """The colours over the picture at `image`, the legend at `legend`, and an outline
        around the `hovered` pixel when the legend reads it out."""
        painter.drawImage(image, heatmap_image(self.nats, self.scale))
        self._paint_legend(painter, legend, metrics, hovered)
        if self.value_at(hovered) is not None:
            painter.setPen(QPen(QColor("white"), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(cell_rect(*hovered).adjusted(0, 0, -1, -1))

    def _paint_legend(self, painter: QPainter, legend: QRectF, metrics: QFontMetrics,
                      hovered: tuple[int, int] | None) -> None:
        """What the colours mean, the scale itself with its ticks, and the value of the
        hovered pixel (marked on the scale)."""
        area = legend.adjusted(8, 4, -8, -4)
        line = metrics.height()
        painter.setPen(LEGEND_TEXT)
        painter.drawText(QRectF(area.left(), area.top(), area.width(), line),
                         Qt.AlignmentFlag.AlignLeft, "Surprise −log p, nats per pixel")
        painter.drawText(QRectF(area.left(), area.top(), area.width(), line),
                         Qt.AlignmentFlag.AlignRight, self.readout(hovered))
        bar = QRectF(area.left(), area.top() + line + 3, area.width(), line - 2)
        strengths = np.linspace(0.0, 1.0, max(2, int(bar.width())))
        colours = heatmap_colours(strengths)[None]  # one row, stretched to the bar's height
        painter.drawImage(bar, rgb_image(np.ascontiguousarray(colours),
                                         QImage.Format.Format_RGB888))
        for nats, text in self.ticks():
            x = self._bar_x(bar, nats)
            painter.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + 3))
            width = metrics.horizontalAdvance(text) + 2
            left = min(max(x - width / 2, area.left()), area.right() - width)
            painter.drawText(QRectF(left, bar.bottom() + 3, width, line),
                             Qt.AlignmentFlag.AlignCenter, text)
        value = self.value_at(hovered)
        if value is not None:  # a marker on the scale at the hovered pixel's value
            x = self._bar_x(bar, min(value, self.scale))
            painter.setPen(QPen(QColor("white"), 2))
            painter.drawLine(QPointF(x, bar.top() - 2), QPointF(x, bar.bottom() + 2))

    def _bar_x(self, bar: QRectF, nats: float) -> float:
        return bar.left() + bar.width() * min(1.0, max(0.0, nats / self.scale))
