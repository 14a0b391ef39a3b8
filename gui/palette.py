"""The colour pen of a colour model: a small palette and a picker, quantized to its levels."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QColorDialog, QHBoxLayout, QToolButton, QWidget

from model.images import display_values, quantize

# Colours that emoji are mostly made of; each is shown as the model's levels make it.
PALETTE = (
    ("White", "#ffffff"), ("Black", "#000000"), ("Grey", "#808080"), ("Red", "#e53935"),
    ("Orange", "#fb8c00"), ("Yellow", "#fdd835"), ("Green", "#43a047"), ("Sky", "#4fc3f7"),
    ("Blue", "#1e40d0"), ("Purple", "#8e24aa"), ("Pink", "#f48fb1"), ("Brown", "#8d5524"),
)
SWATCH = 18


def colour_levels(colour: QColor, levels: int) -> tuple[int, int, int]:
    """A colour's (R, G, B) in `levels` equal-width bins per channel, as an opened image's
    pixels are quantized."""
    rgb = np.array([colour.red(), colour.green(), colour.blue()]) / 255
    return tuple(int(v) for v in quantize(rgb, levels))


def levels_colour(rgb_levels, levels: int) -> QColor:
    """The colour shown for (R, G, B) levels."""
    r, g, b = (int(v) for v in display_values(levels)[np.asarray(rgb_levels)])
    return QColor(r, g, b)


def swatch_icon(colour: QColor) -> QIcon:
    pixmap = QPixmap(SWATCH, SWATCH)
    pixmap.fill(colour)
    return QIcon(pixmap)


class ColourPen(QWidget):
    """A row of swatches, the current colour and a "…" button for any colour.

    Every colour is quantized to the model's levels before it is used or shown, so what the
    pen shows is exactly what it draws. Emits `colour_chosen` with (R, G, B) levels.
    """

    colour_chosen = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.levels = 2
        self.colour = (1, 1, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.current = QToolButton()
        self.current.setToolTip("The pen's colour: click to pick any colour")
        self.current.setIconSize(QSize(SWATCH + 6, SWATCH + 6))
        self.current.clicked.connect(self.pick)
        layout.addWidget(self.current)
        self.swatches = []
        for name, code in PALETTE:
            button = QToolButton()
            button.setToolTip(name)
            button.setAutoRaise(True)
            button.setIconSize(QSize(SWATCH, SWATCH))
            button.clicked.connect(lambda _=False, code=code: self.choose(QColor(code)))
            layout.addWidget(button)
            self.swatches.append((button, QColor(code)))
        self.set_levels(2)

    def set_levels(self, levels: int) -> None:
        """Show the swatches as `levels` levels draw them; the pen starts white."""
        self.levels = levels
        for button, colour in self.swatches:
            button.setIcon(swatch_icon(levels_colour(colour_levels(colour, levels), levels)))
        self._set_colour((levels - 1,) * 3)

    def shown_colour(self) -> QColor:
        return levels_colour(self.colour, self.levels)

    @Slot()
    def pick(self) -> None:
        colour = QColorDialog.getColor(self.shown_colour(), self, "Pen colour")
        if colour.isValid():
            self.choose(colour)

    def choose(self, colour: QColor) -> None:
        self._set_colour(colour_levels(colour, self.levels))
        self.colour_chosen.emit(self.colour)

    def _set_colour(self, rgb_levels) -> None:
        self.colour = tuple(int(v) for v in rgb_levels)
        self.current.setIcon(swatch_icon(self.shown_colour()))
