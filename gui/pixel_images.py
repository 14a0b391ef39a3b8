"""A drawing's pixels as the canvas (and the GIF export) shows them, as arrays and QImages."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from model.images import display_values

from .document import Drawing

UNKNOWN_TONES = np.array([[150, 150, 150], [105, 105, 105]], np.uint8)  # light, dark
UNDER_HEATMAP_BRIGHTNESS = 0.6


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
    return rgb_image(rgb, QImage.Format.Format_RGB888)


def rgb_image(pixels: np.ndarray, image_format: QImage.Format) -> QImage:
    """(H, W, 3 or 4) uint8 pixels as a QImage of `image_format` that owns a copy of them."""
    height, width, depth = pixels.shape
    # copy(): the QImage must own its pixels, not borrow a buffer that is about to go away.
    return QImage(pixels.tobytes(), width, height, width * depth, image_format).copy()
