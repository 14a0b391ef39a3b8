"""Colour emoji: the Noto Color Emoji font rendered to small RGB images for colour models.

The dataset is made on any machine from a registry package: Debian's `fonts-noto-color-emoji`
(install it with `apt-get install -y fonts-noto-color-emoji`). Every codepoint of Unicode
planes 0-2 and 14 for which the font has a visible glyph is one image (1425 with version
2.042 of the font; single codepoints only: flags, skin tones and ZWJ sequences are ligatures
that need a text shaper and are left out, so the set is the same wherever Pillow runs).

Each glyph is drawn in colour at the font's one bitmap size (109 px, a 128 x 128 em square),
composited onto black (the model's background, as MNIST's ink is light on black) and shrunk
to IMAGE_SIZE with Lanczos, as the app fits an opened picture. Measured on all 1425 glyphs:

- size: 16 px loses the detail that tells many emoji apart (clock hands, faces, buildings);
  24 px keeps every one recognisable; 32 px is crisper (22.7 dB against the 128 px glyph,
  20.9 dB at 24 px) but costs 1.8 times as much per image to train and to sample
  (3072 channel values instead of 1728). 24 it is.
- levels: per channel quantization error (RMS, 0..255) is 49 for K=2, 21 for K=4, 9.7 for
  K=8 and 4.7 for K=16. K=4 visibly recolours shaded emoji (a brown bison turns red and
  green); K=8 (512 colours) is hard to tell from the original; K=16 doubles the output
  layer for detail the eye does not miss at this size. K=8 it is.

The split is fixed by a hash of each codepoint: one in ten is test, one in ten validation
(1140 train, 145 valid, 140 test).
Renders are cached outside the repository, under ~/.cache/pixelcnn-studio (or
$XDG_CACHE_HOME), one file per size, and rebuilt when missing or made from another font file.
NumPy and Pillow; no Qt.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import write_atomically
from ..images import fit
from .data import DatasetError, cache_dir, quantize

DATASET = "emoji"
DATA_MODE = "rgb"  # on a model card: 8-bit RGB in K equal-width bins per channel
IMAGE_SIZE = 24
LEVELS = 8
FONT_SIZE = 109  # the font's only bitmap strike: any other size is "invalid pixel size"
EM_BOX = (4, 0, 132, 128)  # where every glyph's 128 x 128 image lies when drawn at (0, 0)
# Codepoints searched for glyphs: planes 0-2 (everything the font maps lies in 0-1) and the
# tag characters of plane 14, less the surrogates, which are no characters.
SEARCHED = (range(0x0, 0xD800), range(0xE000, 0x30000), range(0xE0000, 0xE0080))
FONT_PACKAGE = "fonts-noto-color-emoji"
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),  # Debian, Ubuntu
    Path("/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf"),  # Fedora
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),  # Arch
)
SPLIT_BUCKETS = {0: "test", 1: "valid"}  # by split_hash mod 10; the rest train
CACHE_FORMAT = 1


def find_font(path: str | os.PathLike | None = None) -> Path:
    """The Noto Color Emoji font file: `path`, or the first of FONT_PATHS that exists."""
    candidates = [Path(path)] if path is not None else list(FONT_PATHS)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetError(
        f"The Noto Color Emoji font is not installed (looked for {looked}); the emoji "
        f"dataset is rendered from it. Install it with: apt-get install -y {FONT_PACKAGE}")


def open_font(path: Path) -> ImageFont.FreeTypeFont:
    # Basic layout: one codepoint is one glyph, with or without a text shaper (raqm).
    try:
        return ImageFont.truetype(str(path), FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read as the Noto Color Emoji font at its "
                           f"{FONT_SIZE} px bitmap size ({error}).") from error


def codepoints(font: ImageFont.FreeTypeFont, searched=None) -> list[int]:
    """Every codepoint in `searched` (ranges; default SEARCHED) that the font draws something
    for: an empty box means no glyph."""
    found = []
    for block in SEARCHED if searched is None else searched:
        for cp in block:
            left, top, right, bottom = font.getbbox(chr(cp))
            if right > left and bottom > top:
                found.append(cp)
    return found


def split_hash(cp: int) -> int:
    # SHA-256, not CRC-32: a CRC of names that differ in one character puts neighbouring
    # codepoints (the digits 4, 5 and 6, say) into the same split.
    return int.from_bytes(hashlib.sha256(f"U+{cp:04X}".encode()).digest()[:8], "big")


def split_of(cp: int) -> str:
    """"train", "valid" or "test", fixed for each codepoint whatever else the font holds."""
    return SPLIT_BUCKETS.get(split_hash(cp) % 10, "train")


def render(font: ImageFont.FreeTypeFont, cps, size: int = IMAGE_SIZE) -> np.ndarray:
    """(N, 3, size, size) uint8 RGB: each glyph in colour on black, shrunk to size x size."""
    width, height = EM_BOX[2] + 4, EM_BOX[3]
    images = np.empty((len(cps), 3, size, size), np.uint8)
    for n, cp in enumerate(cps):
        glyph = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((0, 0), chr(cp), font=font, embedded_color=True)
        on_black = Image.alpha_composite(Image.new("RGBA", glyph.size, (0, 0, 0, 255)), glyph)
        pixels = np.asarray(on_black.convert("RGB").crop(EM_BOX), np.float64) / 255
        small = fit(pixels, size, size)  # Lanczos, as the app fits an opened picture
        images[n] = np.round(small * 255).transpose(2, 0, 1)
    return images


def font_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rendered(size: int = IMAGE_SIZE, directory: str | os.PathLike | None = None,
             font_path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, Path]:
    """Every glyph at `size` as (uint8 images N x 3 x size x size, codepoints N), read from
    the cache in `directory` (default cache_dir()) or rendered and cached there; and the path
    of the cache file. Without the font (a GPU machine that cannot install it), a cache
    brought along is used as it is."""
    cache = Path(directory or cache_dir()) / f"emoji-{size}.npz"
    try:
        font_file = find_font(font_path)
    except DatasetError:
        brought = None if font_path is not None else cached_without_font(cache, size)
        if brought is None:
            raise
        return brought[0], brought[1], cache
    digest = font_digest(font_file)
    if cache.is_file():
        try:
            with np.load(cache) as saved:
                if (int(saved["format"]) == CACHE_FORMAT and str(saved["font_sha256"]) == digest
                        and saved["images"].shape[1:] == (3, size, size)):
                    return saved["images"], saved["codepoints"].astype(np.int64), cache
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # damaged or from another version: render afresh below
    font = open_font(font_file)
    cps = np.array(codepoints(font), np.int64)
    images = render(font, cps, size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    def save(temporary: Path) -> None:
        with open(temporary, "wb") as file:  # a file: np.savez would add ".npz" to a name
            np.savez_compressed(file, images=images, codepoints=cps, font_sha256=digest,
                                format=CACHE_FORMAT)

    write_atomically(cache, save)
    return images, cps, cache


def cached_without_font(cache: Path, size: int):
    """(images, codepoints, font SHA-256) from a cache file, or None if there is no usable
    one."""
    try:
        with np.load(cache) as saved:
            if int(saved["format"]) == CACHE_FORMAT and saved["images"].shape[1:] == (3, size,
                                                                                      size):
                return (saved["images"], saved["codepoints"].astype(np.int64),
                        str(saved["font_sha256"]))
    except (OSError, ValueError, KeyError, zlib.error):
        pass
    return None


def load_emoji(split: str, size: int = IMAGE_SIZE, levels: int = LEVELS,
               directory: str | os.PathLike | None = None,
               font_path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split as (uint8 levels N x 3 x size x size, codepoints N), in codepoint order."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"Unknown split {split!r}; expected one of train, valid, test.")
    images, cps, _ = rendered(size, directory, font_path)
    keep = np.array([split_of(int(cp)) == split for cp in cps], bool)
    return quantize(images[keep], "gray", levels), cps[keep]


def description(size: int = IMAGE_SIZE, directory: str | os.PathLike | None = None,
                font_path: str | os.PathLike | None = None) -> dict:
    """What a model card records about the dataset it was trained on."""
    _, cps, cache = rendered(size, directory, font_path)
    try:
        font_file = find_font(font_path)
        font_name, digest = font_file.name, font_digest(font_file)
    except DatasetError:  # rendered elsewhere: the cache names the font it came from
        font_name, digest = "NotoColorEmoji.ttf", cached_without_font(cache, size)[2]
    splits = [split_of(int(cp)) for cp in cps]
    return {
        "font": f"{font_name} ({FONT_PACKAGE}), {FONT_SIZE} px bitmaps",
        "font_sha256": digest,
        "glyphs": len(cps),
        "image_size": size,
        "background": "black",
        "split_images": {name: splits.count(name) for name in ("train", "valid", "test")},
        "split_rule": "first 8 bytes of sha256('U+XXXX'), big-endian, mod 10: 0 test, "
                      "1 valid, else train",
    }
