"""The Qt side of pictures: levels as QImages, and a QImage as a picture file in memory.

Reading pictures, levels, colours and PNG and GIF export live in `model/images.py` (Pillow
and NumPy only, shared with the command line); they are re-exported here so the GUI has one
place to import picture handling from.
"""

from __future__ import annotations

import io

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice
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
    "IMAGE_SUFFIXES", "INVERT_CHOICES", "MAX_PIXELS", "ImageFileError", "in_memory_png",
    "levels_to_rgb", "load_image", "load_mask", "save_gif", "save_png", "to_qimage",
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


def in_memory_png(image: QImage, name: str) -> io.BytesIO | None:
    """`image` as a PNG file in memory, which load_image reads as it reads a file on disk
    (so a QImage becomes a drawing as an opened picture does); `name` is what load_image's
    errors call it. None if Qt cannot encode the image."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        return None
    picture = io.BytesIO(buffer.data().data())
    picture.name = name
    return picture
