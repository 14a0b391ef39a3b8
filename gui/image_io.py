"""Reading pictures into model levels, and writing completions out as PNG and GIF files.

The model's convention is light ink on a black background with values 0..levels-1, one
(C, H, W) uint8 array per image. `load_image` turns any ordinary picture into that;
`save_png` and `save_gif` turn such arrays back into files a user can open anywhere.
"""

from __future__ import annotations

import functools
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QIODevice, QSaveFile
from PySide6.QtGui import QImage

MAX_PIXELS = 100_000_000  # refuse larger pictures before decoding them
INVERT_CHOICES = ("auto", "yes", "no")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow's own "L" conversion


class ImageFileError(ValueError):
    """A picture that cannot be read; the message names the file and the problem."""


# Loading.

def load_image(path, height: int, width: int, channels: int, levels: int,
               invert: str = "auto") -> np.ndarray:
    """The picture at `path` as a (channels, height, width) uint8 array of levels.

    It is fitted inside height x width keeping its aspect ratio (padded with its own
    background colour), converted to grey (channels=1) or RGB (channels=3) and quantized
    to `levels` equal-width bins. Dark-on-light pictures are inverted to light-on-dark when
    `invert` is "auto" (judged by the border); "yes" and "no" force the choice.
    """
    if channels not in (1, 3):
        raise ValueError(f"Images have 1 or 3 channels, not {channels}.")
    if levels < 2:
        raise ValueError(f"An image needs at least 2 levels, not {levels}.")
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}.")
    pixels = read_pixels(Path(path))  # (H, W, 1 or 3) floats in 0..1
    if invert == "yes" or (invert == "auto" and is_dark_on_light(pixels)):
        pixels = 1.0 - pixels
    if channels == 1 and pixels.shape[2] == 3:
        pixels = brightness(pixels)[..., None]
    elif channels == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    fitted = fit(pixels, height, width)
    return quantize(fitted, levels).transpose(2, 0, 1).copy()


def read_pixels(path: Path) -> np.ndarray:
    """Decode the first frame as (H, W, 1 or 3) floats in 0..1, transparency flattened."""
    check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours is checked just below, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageFileError(f"{path} is too large to open ({error}).") from error
    except Image.UnidentifiedImageError as error:
        raise ImageFileError(f"{path} is not an image, or not in a format this app can read "
                             "(PNG, JPEG, BMP, GIF).") from error
    except OSError as error:
        raise ImageFileError(f"Cannot open {path}: {error.strerror or error}.") from error
    with picture:
        width, height = picture.size
        if width * height > MAX_PIXELS:
            raise ImageFileError(f"{path} is too large: {width}x{height} pixels is over the "
                                 f"limit of {MAX_PIXELS // 1_000_000} megapixels.")
        try:
            picture.seek(0)  # the first frame of an animation
            picture.load()
            return to_floats(picture)
        except Exception as error:  # Pillow's decoders raise many kinds
            if isinstance(error, EOFError) or "truncated" in str(error):
                problem = "the file is truncated (it ends before the image does)"
            else:
                problem = f"the image data is damaged ({error or type(error).__name__})"
            raise ImageFileError(f"Cannot read {path}: {problem}.") from error


def check_file(path: Path) -> None:
    if not path.exists():
        raise ImageFileError(f"Cannot open {path}: the file does not exist.")
    if path.is_dir():
        raise ImageFileError(f"Cannot open {path}: it is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageFileError(f"Cannot open {path}: the file is empty.")


def to_floats(picture: Image.Image) -> np.ndarray:
    """(H, W, 1) grey or (H, W, 3) colour floats in 0..1 from any Pillow mode.

    Grey stays one channel (no colour weights, so 8-bit grey values come back exactly) and
    16-bit grey keeps its precision until the final quantization.
    """
    mode = picture.mode
    if mode.startswith("I"):  # 16-bit ("I;16", "I;16B", ...) or 32-bit integer grey
        grey = np.asarray(picture, dtype=np.float64)
        scale = 255.0 if mode == "I" and grey.max(initial=0) <= 255 else 65535.0
        return np.clip(grey / scale, 0, 1)[..., None]
    if mode == "F":
        grey = np.asarray(picture, dtype=np.float64)
        scale = 1.0 if grey.max(initial=0) <= 1 else 255.0
        return np.clip(grey / scale, 0, 1)[..., None]
    has_alpha = "A" in mode or "a" in mode or "transparency" in picture.info
    if mode in ("1", "L", "LA", "La") or (mode == "P" and has_grey_palette(picture)):
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    values = np.asarray(picture.convert(target), dtype=np.float64) / 255
    if values.ndim == 2:
        values = values[..., None]
    if not has_alpha:
        return values
    return composite(values[..., :-1], values[..., -1:])


def has_grey_palette(picture: Image.Image) -> bool:
    palette = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    return bool((palette[..., 0] == palette[..., 1]).all()
                and (palette[..., 1] == palette[..., 2]).all())


def composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten onto white when the visible ink is dark, onto black when it is light.

    Transparent parts have no colour of their own; the background that contrasts with the
    ink keeps a drawing visible whichever way round it was made.
    """
    weight = alpha.sum()
    ink = brightness(colour)[..., None]
    ink_brightness = (ink * alpha).sum() / weight if weight > 0 else 1.0
    background = 1.0 if ink_brightness < 0.5 else 0.0
    return colour * alpha + background * (1 - alpha)


def brightness(pixels: np.ndarray) -> np.ndarray:
    """(..., 1 or 3) -> (...) perceived brightness."""
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels @ LUMA


def border(pixels: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, (n, channels)."""
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def is_dark_on_light(pixels: np.ndarray) -> bool:
    """A bright border means a light background, which the model's convention has dark."""
    return float(brightness(border(pixels)).mean()) > 0.5


def fit(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H, W, C) floats to fit inside height x width, centred on the background."""
    source_height, source_width, channels = pixels.shape
    if (source_height, source_width) == (height, width):
        return pixels
    scale = min(width / source_width, height / source_height)
    new_width = min(width, max(1, round(source_width * scale)))
    new_height = min(height, max(1, round(source_height * scale)))
    # Lanczos on float ("F") images: high-quality, anti-aliased downsampling of each channel.
    resized = np.stack([
        np.asarray(Image.fromarray(pixels[..., c].astype(np.float32))
                   .resize((new_width, new_height), Image.Resampling.LANCZOS))
        for c in range(channels)
    ], axis=2).clip(0, 1)
    background = np.median(border(pixels), axis=0)
    canvas = np.empty((height, width, channels))
    canvas[:] = background
    top, left = (height - new_height) // 2, (width - new_width) // 2
    canvas[top:top + new_height, left:left + new_width] = resized
    return canvas


def quantize(pixels: np.ndarray, levels: int) -> np.ndarray:
    """Equal-width bins of 0..1; for 2 levels, a threshold at the midpoint."""
    return np.clip(np.floor(pixels * levels), 0, levels - 1).astype(np.uint8)


# Showing and saving.

def levels_to_rgb(values: np.ndarray, levels: int) -> np.ndarray:
    """(C, H, W) levels -> (H, W, 3) uint8 colours, 0 black and levels-1 full brightness."""
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[0] not in (1, 3):
        raise ValueError(f"Expected a (1 or 3, H, W) array of levels, not {values.shape}.")
    if levels < 2:
        raise ValueError(f"An image needs at least 2 levels, not {levels}.")
    colours = display_values(levels)[values.clip(0, levels - 1)]
    rgb = np.broadcast_to(colours, (3, *values.shape[1:]))
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


@functools.cache
def display_values(levels: int) -> np.ndarray:
    """The 8-bit value shown for each level: as near an even spread 0..255 as possible
    while still lying in that level's bin, so a saved image loads back to the same levels."""
    bytes_ = np.arange(256)
    level_of_byte = quantize(bytes_ / 255, levels)
    even = np.arange(levels) * (255 / (levels - 1))
    table = np.empty(levels, np.uint8)
    for level in range(levels):
        in_bin = bytes_[level_of_byte == level]
        table[level] = in_bin[np.argmin(np.abs(in_bin - even[level]))]
    table.flags.writeable = False  # shared by every caller through the cache
    return table


def enlarge(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Blocky (nearest-neighbour) enlargement of (H, W, ...) by a whole number."""
    if scale < 1:
        raise ValueError(f"Scale must be a whole number of at least 1, not {scale}.")
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


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


def save_gif(path, frames: list[np.ndarray], levels: int, scale: int = 8,
             frame_ms: int = 40) -> None:
    """Write frames of (C, H, W) levels as a looping animated GIF, atomically.

    The last frame is held for at least a second so the finished picture can be seen
    before the animation starts again.
    """
    if not frames:
        raise ValueError("An animation needs at least one frame.")
    pictures = [Image.fromarray(enlarge(levels_to_rgb(frame, levels), scale))
                for frame in frames]
    durations = [frame_ms] * (len(pictures) - 1) + [max(frame_ms, 1000)]
    path = Path(path)
    # Beside the target, so os.replace is a rename on one file system and never half-done.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        pictures[0].save(temporary, format="GIF", save_all=True, append_images=pictures[1:],
                         duration=durations, loop=0)
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(f"Cannot save {path}: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
