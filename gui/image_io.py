"""The Qt side of pictures: levels as QImages, and saving PNGs through QSaveFile.

Reading pictures, levels, colours and GIF export live in `model/images.py` (Pillow and
NumPy only, shared with the command line); they are re-exported here so the GUI has one
place to import picture handling from.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QIODevice, QSaveFile
from PySide6.QtGui import QImage

from model.images import (
    INVERT_CHOICES,
    MAX_PIXELS,
    ImageFileError,
    enlarge,
    levels_to_rgb,
    load_image,
    load_mask,
    save_gif,
)

__all__ = [
    "INVERT_CHOICES", "MAX_PIXELS", "ImageFileError", "levels_to_rgb", "load_image",
    "load_mask", "save_gif", "save_png", "to_qimage",
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


def save_png(path, values: np.ndarray, levels: int, scale: int = 1) -> None:
    """Write one image as PNG, atomically: the file is replaced only after a full write."""
    path = os.fspath(path)
    image = to_qimage(values, levels, scale)
    file = QSaveFile(path)
    if not file.open(QIODevice.OpenModeFlag.WriteOnly):
        raise OSError(f"Cannot save {path}: {file.errorString()}")
    if not image.save(file, "PNG"):
        file.cancelWriting()
        raise OSError(f"Cannot save {path}: the PNG could not be written "
                      f"({file.errorString() or 'unknown error'}).")
    if not file.commit():
        raise OSError(f"Cannot save {path}: {file.errorString()}")
