"""The Qt side of pictures: levels as QImages.

Reading pictures, levels, colours and PNG and GIF export live in `model/images.py` (Pillow
and NumPy only, shared with the command line); they are re-exported here so the GUI has one
place to import picture handling from.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from model.images import (
    IMAGE_SUFFIXES,
    INVERT_CHOICES,
    MAX_PIXELS,
    ImageFileError,
    enlarge,
    levels_to_rgb,
    load_image,
    load_mask,
    save_gif,
)
from model.images import write_png as save_png

__all__ = [
    "IMAGE_SUFFIXES", "INVERT_CHOICES", "MAX_PIXELS", "ImageFileError", "levels_to_rgb",
    "load_image", "load_mask", "save_gif", "save_png", "to_qimage",
]


def to_qimage(values: np.ndarray, levels: int, scale: int = 1) -> QImage:
    """A QImage that owns its pixels: Grayscale8 for one channel, RGB888 for three."""
    rgb = enlarge(levels_to_rgb(values, levels), scale)
    height, width = rgb.shape[:2]
    if np.asarray(values).shape[0] == 1:
        grey = np.ascontiguousarray(rgb[..., 0])
        image = QImage(grey.data, width, height, width, QImage.Format.Format_Grayscale8)
    else:
        image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # the numpy buffer dies with this function; the copy does not

