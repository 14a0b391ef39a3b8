"""Reading pictures into model levels, and writing completions out as PNG and GIF files.

The model's convention is light ink on a black background with values 0..levels-1, one
(C, H, W) uint8 array per image. `load_image` turns any ordinary picture into that and
`load_mask` reads which pixels to complete; `write_png` and `save_gif` turn such arrays back
into files a user can open anywhere. Pillow and NumPy only: the command line uses this
without Qt, and `gui/image_io.py` adds the Qt parts.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from .files import write_atomically

MAX_PIXELS = 100_000_000  # refuse larger pictures before decoding them
# A picture much larger than the model is first shrunk by whole-number box averaging (in
# Pillow, on bytes), keeping at least this many source pixels per model pixel for the final
# Lanczos resize: a 10000x10000 scan never becomes gigabytes of floats.
SHRINK_MARGIN = 4
INVERT_CHOICES = ("auto", "yes", "no")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow's own "L" conversion
MASK_THRESHOLD = 128 / 255  # mask pixels this bright or brighter are to be completed


class ImageFileError(ValueError):
    """A picture that cannot be read; the message names the file and the problem."""


# Loading.

def load_image(path, height: int, width: int, channels: int, levels: int,
               invert: str = "auto") -> np.ndarray:
    """The picture at `path` (or in `path`, a binary file object such as io.BytesIO, named
    in errors by its `name`) as a (channels, height, width) uint8 array of levels.

    It is fitted inside height x width keeping its aspect ratio (padded with its own
    background colour), converted to grey (channels=1) or RGB (channels=3) and quantized
    to `levels` equal-width bins. Dark-on-light pictures are inverted to light-on-dark when
    `invert` is "auto" (judged by the border); "yes" and "no" force the choice. For colour
    (channels=3) "auto" never inverts (a negative is no colour picture's convention) and
    transparency is flattened onto black, the colour models' background.
    """
    if channels not in (1, 3):
        raise ValueError(f"Images have 1 or 3 channels, not {channels}.")
    if levels < 2:
        raise ValueError(f"An image needs at least 2 levels, not {levels}.")
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}.")
    colour = channels == 3
    # (H, W, 1 or 3) floats in 0..1
    source = path if hasattr(path, "read") else Path(path)
    pixels = read_pixels(source, (height, width), transparent_on_black=colour)
    if invert == "yes" or (invert == "auto" and not colour and is_dark_on_light(pixels)):
        pixels = 1.0 - pixels
    if channels == 1 and pixels.shape[2] == 3:
        pixels = brightness(pixels)[..., None]
    elif channels == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    fitted = fit(pixels, height, width)
    return quantize(fitted, levels).transpose(2, 0, 1).copy()


def load_mask(path, height: int, width: int, image=None) -> np.ndarray:
    """Which pixels to complete, as (height, width) bools: the mask's white (>= 128) pixels.

    A mask is the model's size, or the size of the picture `image` it belongs to; then it
    is fitted exactly as that picture is, and the padding around it is not completed.
    """
    path = Path(path)
    mask_size = picture_size(path)
    image_size = picture_size(Path(image)) if image is not None else None
    if mask_size not in ((width, height), image_size):
        allowed = f"{width}x{height} (the model's size)"
        if image_size not in (None, (width, height)):
            allowed += f" or {image_size[0]}x{image_size[1]} (the size of {image})"
        raise ImageFileError(f"{path} is {mask_size[0]}x{mask_size[1]} pixels; "
                             f"a mask must be {allowed}.")
    grey = brightness(read_pixels(path, (height, width)))[..., None]
    return fit(grey, height, width, background=0.0)[..., 0] >= MASK_THRESHOLD


def read_pixels(path: Path | BinaryIO, fit_within: tuple[int, int] | None = None,
                transparent_on_black: bool = False) -> np.ndarray:
    """Decode the first frame as (H, W, 1 or 3) floats in 0..1, transparency flattened
    (see `composite`, or onto black with `transparent_on_black`).

    `fit_within` (height, width) is the size the pixels are headed for: a picture many
    times larger comes back shrunk (see SHRINK_MARGIN), with its aspect ratio kept.
    """
    with open_picture(path) as picture:
        try:
            picture.seek(0)  # the first frame of an animation
            picture.load()
            return to_floats(picture, fit_within, transparent_on_black)
        except Exception as error:  # Pillow's decoders raise many kinds
            if isinstance(error, EOFError) or "truncated" in str(error):
                problem = "the file is truncated (it ends before the image does)"
            else:
                problem = f"the image data is damaged ({error or type(error).__name__})"
            raise ImageFileError(f"Cannot read {picture_name(path)}: {problem}.") from error


def picture_size(path: Path) -> tuple[int, int]:
    """(width, height) of the picture at `path`, read from its header."""
    with open_picture(path) as picture:
        return picture.size


@contextlib.contextmanager
def open_picture(path: Path | BinaryIO) -> Iterator[Image.Image]:
    """The picture at `path` (or in a binary file object), opened but not yet decoded,
    checked against MAX_PIXELS."""
    name = picture_name(path)
    if isinstance(path, Path):
        check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours is checked just below, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageFileError(f"{name} is too large to open ({error}).") from error
    except Image.UnidentifiedImageError as error:
        raise ImageFileError(f"{name} is not an image, or not in a format this app can read "
                             "(PNG, JPEG, BMP, GIF).") from error
    except OSError as error:
        raise ImageFileError(f"Cannot open {name}: {error.strerror or error}.") from error
    with picture:
        width, height = picture.size
        if width * height > MAX_PIXELS:
            raise ImageFileError(f"{name} is too large: {width}x{height} pixels is over the "
                                 f"limit of {MAX_PIXELS // 1_000_000} megapixels.")
        yield picture


def picture_name(path: Path | BinaryIO) -> str:
    """What errors call a picture: its path, or a file object's `name`."""
    return str(path) if isinstance(path, Path) else getattr(path, "name", "the picture")


def check_file(path: Path) -> None:
    if not path.exists():
        raise ImageFileError(f"Cannot open {path}: the file does not exist.")
    if path.is_dir():
        raise ImageFileError(f"Cannot open {path}: it is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageFileError(f"Cannot open {path}: the file is empty.")


def to_floats(picture: Image.Image, fit_within: tuple[int, int] | None = None,
              transparent_on_black: bool = False) -> np.ndarray:
    """(H, W, 1) grey or (H, W, 3) colour floats in 0..1 from any Pillow mode.

    Grey stays one channel (no colour weights, so 8-bit grey values come back exactly) and
    16-bit grey keeps its precision until the final quantization.
    """
    mode = picture.mode
    if mode.startswith("I") or mode == "F":  # 16- or 32-bit integer grey, or float grey
        grey = np.asarray(shrink(picture, fit_within), dtype=np.float64)
        if mode == "F":
            scale = 1.0 if grey.max(initial=0) <= 1 else 255.0
        else:
            scale = 255.0 if mode == "I" and grey.max(initial=0) <= 255 else 65535.0
        return np.clip(grey / scale, 0, 1)[..., None]
    has_alpha = "A" in mode or "a" in mode or "transparency" in picture.info
    if mode in ("1", "L", "LA", "La") or (mode == "P" and has_grey_palette(picture)):
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    if mode != target:
        picture = picture.convert(target)
    values = np.asarray(shrink(picture, fit_within), dtype=np.float64) / 255
    if values.ndim == 2:
        values = values[..., None]
    if not has_alpha:
        return values
    if transparent_on_black:
        return values[..., :-1] * values[..., -1:]
    return composite(values[..., :-1], values[..., -1:])


def shrink(picture: Image.Image, fit_within: tuple[int, int] | None) -> Image.Image:
    """The picture box-averaged by a whole factor when it is over SHRINK_MARGIN times
    larger than needed to fill `fit_within` (height, width); else the picture itself."""
    if fit_within is None:
        return picture
    width, height = picture.size
    factor = int(max(width / fit_within[1], height / fit_within[0]) // SHRINK_MARGIN)
    if factor < 2:
        return picture
    if picture.mode.startswith("I;16"):  # Pillow averages 8-bit, 32-bit and float pictures
        picture = picture.convert("I")
    return picture.reduce(factor)


def has_grey_palette(picture: Image.Image) -> bool:
    """Whether every palette entry the picture uses is a grey."""
    palette = np.array(picture.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
    used = np.nonzero(picture.histogram())[0]  # a "P" picture's histogram counts indices
    colours = palette[used[used < len(palette)]]
    return bool((colours == colours[:, :1]).all())


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


def fit(pixels: np.ndarray, height: int, width: int, background=None) -> np.ndarray:
    """Resize (H, W, C) floats to fit inside height x width, centred on the background
    (by default the median colour of the picture's border)."""
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
    canvas = np.empty((height, width, channels))
    canvas[:] = np.median(border(pixels), axis=0) if background is None else background
    top, left = (height - new_height) // 2, (width - new_width) // 2
    canvas[top:top + new_height, left:left + new_width] = resized
    return canvas


def bottom_half_known(height: int, width: int) -> np.ndarray:
    """Known-pixel mask: the top half (rows < height // 2) known, the rest to complete."""
    known = np.ones((height, width), bool)
    known[height // 2:] = False
    return known


def levels_of_bytes(values: np.ndarray, levels: int) -> np.ndarray:
    """8-bit values (0..255) to levels 0..K-1 in K equal-width bins: floor(value * K / 256).
    The one quantisation of the project: datasets, opened pictures, the palette, and the
    saved picture read back (display_values lies in these bins). For 2 levels a threshold
    at 128."""
    # 255 * K // 256 == K - 1 for every K <= 256, so the top bin needs no clipping.
    return ((np.asarray(values).astype(np.uint16) * levels) >> 8).astype(np.uint8)


def quantize(pixels: np.ndarray, levels: int) -> np.ndarray:
    """Brightness 0..1 to levels, in levels_of_bytes's bins with 1.0 as 255, without first
    rounding to 8 bits (a 16-bit picture keeps its precision). The 1e-9 keeps a value
    made from a byte, b / 255, in that byte's bin whatever the float rounding."""
    scaled = np.clip(pixels, 0, 1) * (255 * levels / 256)
    return np.minimum(np.floor(scaled + 1e-9), levels - 1).astype(np.uint8)


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


def write_png(path, values: np.ndarray, levels: int, scale: int = 1) -> None:
    """Write one image as PNG (grey for one channel, RGB for three), atomically."""
    rgb = enlarge(levels_to_rgb(values, levels), scale)
    picture = Image.fromarray(rgb[..., 0] if np.asarray(values).shape[0] == 1 else rgb)
    write_atomically(path, lambda temporary: picture.save(temporary, format="PNG"))


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
    write_atomically(path, lambda temporary: pictures[0].save(
        temporary, format="GIF", save_all=True, append_images=pictures[1:],
        duration=durations, loop=0))
