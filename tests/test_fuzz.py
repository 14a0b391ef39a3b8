"""Fuzzing the picture loaders: whatever the bytes, `load_image` and `load_mask` return a
valid array or raise ImageFileError naming the file, never anything else.

Bounded and reproducible: a fixed number of examples, derandomized (the same examples on
every run until Hypothesis or these tests change), with no example database and
Hypothesis's other files in the temporary folder: nothing is written to the repository.
"""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from model.images import ImageFileError, load_image, load_mask

# Hypothesis caches the constants it finds in the source under ./.hypothesis, already while
# the tests are collected: set its folder now, on import.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "pixelcnn-studio-hypothesis")

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# Pillow modes and what each pixel takes in `Image.frombytes`.
BYTES_PER_PIXEL = {"L": 1, "LA": 2, "P": 1, "RGB": 3, "RGBA": 4, "I;16": 2}
MODES = ("1", *BYTES_PER_PIXEL)
FORMATS = {  # the modes each format can save, as Pillow writes them
    "PNG": MODES,
    "GIF": MODES,
    "BMP": ("1", "L", "P", "RGB", "RGBA"),
    "JPEG": ("1", "L", "RGB"),
}
MAGIC = (b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\xff\xd8\xff\xe0")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@st.composite
def pictures(draw, size=None) -> Image.Image:
    """A small picture of random pixels in any mode (a palette one maybe transparent)."""
    mode = draw(st.sampled_from(MODES))
    width, height = size or (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    row_bytes = (width + 7) // 8 if mode == "1" else width * BYTES_PER_PIXEL[mode]
    data = draw(st.binary(min_size=row_bytes * height, max_size=row_bytes * height))
    picture = Image.frombytes(mode, (width, height), data)
    if mode == "P":
        picture.putpalette(draw(st.binary(min_size=3, max_size=768)))
        if draw(st.booleans()):
            picture.info["transparency"] = draw(st.integers(0, 255))
    return picture


@st.composite
def encodings(draw, size=None) -> bytes:
    """A picture encoded as PNG, GIF, BMP or JPEG (sometimes with a second frame), one
    time in four cut off at a random point."""
    picture = draw(pictures(size))
    formats = [name for name, modes in FORMATS.items() if picture.mode in modes]
    file_format = draw(st.sampled_from(formats))
    buffer = io.BytesIO()
    options = dict(picture.info)
    if file_format in ("PNG", "GIF") and draw(st.booleans()):  # animated
        options.update(save_all=True, append_images=[draw(pictures(picture.size))])
    try:
        picture.save(buffer, format=file_format, **options)
    except (OSError, ValueError):  # a combination Pillow cannot write (an APNG of some modes)
        reject()
    encoded = buffer.getvalue()
    if draw(st.integers(0, 3)) == 0:
        encoded = encoded[:draw(st.integers(0, len(encoded)))]
    return encoded


def random_files():
    """Random bytes (sometimes behind a real format's signature) or an encoded picture."""
    junk = st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC),
                     st.binary(max_size=300))
    return st.one_of(encodings(), junk)


def write(folder, name: str, data: bytes):
    path = folder / name
    path.write_bytes(data)
    return path


def assert_names_the_file(error: ImageFileError, path) -> None:
    assert str(path) in str(error)


@FUZZ
@given(data=random_files(), suffix=st.sampled_from([".png", ".gif", ".bmp", ".jpg"]),
       height=st.integers(1, 10), width=st.integers(1, 10), channels=st.sampled_from([1, 3]),
       levels=st.sampled_from([2, 4, 8, 256]), invert=st.sampled_from(["auto", "yes", "no"]))
def test_load_image_reads_a_picture_or_names_the_file(folder, data, suffix, height, width,
                                                     channels, levels, invert):
    path = write(folder, f"picture{suffix}", data)
    try:
        values = load_image(path, height, width, channels, levels, invert)
    except ImageFileError as error:
        assert_names_the_file(error, path)
        return
    assert values.shape == (channels, height, width) and values.dtype == np.uint8
    assert values.max() < levels


@FUZZ
@given(data=st.data(), height=st.integers(1, 10), width=st.integers(1, 10))
def test_load_mask_reads_a_mask_or_names_the_file(folder, data, height, width):
    # The mask is junk, a picture of any size, or one of the model's size or its picture's.
    image = data.draw(st.none() | encodings(), label="image")
    image_path = None if image is None else write(folder, "picture.png", image)
    sizes = [(width, height)]
    if image_path is not None:
        try:
            with Image.open(image_path) as picture:
                sizes.append(picture.size)
        except Exception:  # noqa: BLE001 - an unreadable picture: the model's size only
            pass
    mask = data.draw(st.sampled_from(sizes).flatmap(encodings) | random_files(), label="mask")
    mask_path = write(folder, "mask.png", mask)
    try:
        chosen = load_mask(mask_path, height, width, image_path)
    except ImageFileError as error:
        # The mask's name, or the picture's when that one could not be read.
        assert str(mask_path) in str(error) or str(image_path) in str(error)
        return
    assert chosen.shape == (height, width) and chosen.dtype == bool
