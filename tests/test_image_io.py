import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gui.image_io import (
    ImageFileError,
    levels_to_rgb,
    load_image,
    save_gif,
    save_png,
    to_qimage,
)


def digit_on_white(height=40, width=30) -> np.ndarray:
    """A black bar (a "1") on a white page: the usual scanned-digit look."""
    page = np.full((height, width), 255, np.uint8)
    page[10:30, 12:18] = 0
    return page


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds almost no data: Pillow opens it lazily."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels, levels", [(1, 2), (1, 4), (1, 256), (3, 4), (1, 100)])
def test_a_saved_png_loads_back_to_the_same_levels(tmp_path, channels, levels):
    values = np.random.default_rng(levels).integers(0, levels, (channels, 6, 7), np.uint8)
    path = tmp_path / "completion.png"
    save_png(path, values, levels)
    loaded = load_image(path, 6, 7, channels, levels, invert="no")
    assert loaded.dtype == np.uint8 and loaded.shape == (channels, 6, 7)
    np.testing.assert_array_equal(loaded, values)


def test_save_png_scales_up_blockily(tmp_path):
    values = np.array([[[0, 1], [1, 0]]], np.uint8)
    save_png(tmp_path / "big.png", values, 2, scale=3)
    with Image.open(tmp_path / "big.png") as picture:
        pixels = np.asarray(picture.convert("L"))
    assert pixels.shape == (6, 6)
    np.testing.assert_array_equal(pixels[:3, :3], 0)
    np.testing.assert_array_equal(pixels[:3, 3:], 255)


def test_save_png_names_the_path_when_it_cannot_write(tmp_path):
    missing = tmp_path / "no such folder" / "out.png"
    with pytest.raises(OSError, match="no such folder"):
        save_png(missing, np.zeros((1, 2, 2), np.uint8), 2)


def test_a_dark_digit_on_white_is_inverted_to_light_ink_on_black(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(digit_on_white()).save(path)
    loaded = load_image(path, 8, 8, 1, 2)[0]
    assert loaded[0, 0] == 0 and loaded[-1, -1] == 0  # background black
    assert loaded[4, 3:5].tolist() == [1, 1]  # the bar is ink
    assert loaded.sum() < loaded.size / 2
    kept = load_image(path, 8, 8, 1, 2, invert="no")[0]
    np.testing.assert_array_equal(kept, 1 - loaded)


def test_a_light_digit_on_black_is_not_inverted_unless_asked(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(255 - digit_on_white()).save(path)
    loaded = load_image(path, 8, 8, 1, 2)[0]
    assert loaded[0, 0] == 0 and loaded[4, 3] == 1
    np.testing.assert_array_equal(load_image(path, 8, 8, 1, 2, invert="yes")[0], 1 - loaded)


def test_a_wide_image_is_fitted_with_its_aspect_kept_and_padded_with_background(tmp_path):
    path = tmp_path / "wide.png"
    wide = np.zeros((10, 40), np.uint8)
    wide[:, 15:25] = 255  # a light block in the middle
    Image.fromarray(wide).save(path)
    loaded = load_image(path, 8, 8, 1, 2)[0]
    # 40x10 fits as 8x2: two middle rows, the rest background
    np.testing.assert_array_equal(loaded[:3], 0)
    np.testing.assert_array_equal(loaded[5:], 0)
    assert loaded[3:5, 3:5].all() and not loaded[3:5, :2].any()


def test_levels_are_equal_width_bins(tmp_path):
    path = tmp_path / "ramp.png"
    Image.fromarray(np.array([[0, 63, 64, 127, 128, 191, 192, 255]], np.uint8)).save(path)
    loaded = load_image(path, 1, 8, 1, 4, invert="no")[0, 0]
    assert loaded.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    binary = load_image(path, 1, 8, 1, 2, invert="no")[0, 0]
    assert binary.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_palette_images_load(tmp_path):
    path = tmp_path / "palette.png"
    Image.fromarray(255 - digit_on_white()).convert("RGB").convert("P").save(path)
    with Image.open(path) as picture:
        assert picture.mode == "P"
    assert load_image(path, 8, 8, 1, 2)[0, 4, 3] == 1


def test_transparent_backgrounds_are_flattened_so_the_ink_shows(tmp_path):
    dark_ink = np.zeros((20, 20, 4), np.uint8)
    dark_ink[5:15, 8:12, 3] = 255  # opaque black bar on transparent
    light_ink = dark_ink.copy()
    light_ink[..., :3] = 255  # opaque white bar on transparent (white) pixels
    for name, rgba in [("dark", dark_ink), ("light", light_ink)]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        loaded = load_image(path, 10, 10, 1, 2)[0]
        assert loaded[5, 5] == 1, name
        assert loaded[0, 0] == 0 and loaded[5, 0] == 0, name


def test_sixteen_bit_images_load_with_their_full_range(tmp_path):
    path = tmp_path / "deep.png"
    ramp = np.array([[0, 16383, 16384, 32767, 32768, 49151, 49152, 65535]], np.uint16)
    Image.fromarray(ramp).save(path)
    with Image.open(path) as picture:
        assert picture.mode.startswith("I")
    assert load_image(path, 1, 8, 1, 4, invert="no")[0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_first_frame_of_an_animated_gif_is_used(tmp_path):
    path = tmp_path / "animated.gif"
    first = Image.fromarray(np.zeros((8, 8), np.uint8))
    second = Image.fromarray(np.full((8, 8), 255, np.uint8))
    first.save(path, save_all=True, append_images=[second], duration=50, loop=0)
    with Image.open(path) as picture:
        assert picture.n_frames == 2
    np.testing.assert_array_equal(load_image(path, 8, 8, 1, 2, invert="no"), 0)


def test_a_one_pixel_image_loads(tmp_path):
    path = tmp_path / "dot.bmp"
    Image.new("L", (1, 1), 200).save(path)
    loaded = load_image(path, 6, 7, 1, 4, invert="no")
    assert loaded.shape == (1, 6, 7)
    np.testing.assert_array_equal(loaded, 3)  # the dot, stretched over the whole image


def test_jpeg_and_colour_images_load_in_rgb(tmp_path):
    path = tmp_path / "photo.jpg"
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 255  # pure red
    Image.fromarray(colour).save(path, quality=95)
    loaded = load_image(path, 4, 4, 3, 2, invert="no")
    assert loaded.shape == (3, 4, 4)
    assert loaded[0].all() and not loaded[1:].any()


@pytest.mark.parametrize("name, content, problem", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"This is a text file, not a picture.\n", "not an image"),
])
def test_unreadable_files_are_refused_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageFileError, match=problem) as caught:
        load_image(path, 6, 7, 1, 2)
    assert name in str(caught.value)


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ImageFileError, match="missing.png.*does not exist"):
        load_image(tmp_path / "missing.png", 6, 7, 1, 2)


def test_a_truncated_png_is_refused_naming_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)
    whole = tmp_path / "whole.png"
    Image.fromarray(noise).save(whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ImageFileError, match="cut.png.*truncated"):
        load_image(path, 6, 7, 1, 2)


@pytest.mark.parametrize("width, height", [(11_000, 10_000), (20_000, 20_000)])
def test_huge_images_are_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(width, height))
    with pytest.raises(ImageFileError, match="huge.png is too large"):
        load_image(path, 6, 7, 1, 2)


def test_levels_to_rgb_spreads_levels_from_black_to_white():
    grey = levels_to_rgb(np.array([[[0, 1, 2, 3]]], np.uint8), 4)
    assert grey.shape == (1, 4, 3) and grey.dtype == np.uint8
    assert grey[0, :, 0].tolist() == [0, 85, 170, 255]
    assert (grey[..., 0] == grey[..., 2]).all()
    colour = levels_to_rgb(np.array([[[1]], [[0]], [[1]]], np.uint8), 2)
    assert colour[0, 0].tolist() == [255, 0, 255]


def test_to_qimage_owns_its_pixels():
    values = np.array([[[0, 1], [1, 0]]], np.uint8)
    image = to_qimage(values, 2, scale=2)
    del values
    assert (image.width(), image.height()) == (4, 4)
    assert image.pixelColor(0, 0).value() == 0 and image.pixelColor(3, 0).value() == 255
    colour = to_qimage(np.array([[[1]], [[0]], [[0]]], np.uint8), 2)
    assert colour.pixelColor(0, 0).getRgb()[:3] == (255, 0, 0)


def test_save_gif_writes_an_animation_and_leaves_no_temporary_file(tmp_path):
    frames = [np.zeros((1, 6, 7), np.uint8)]
    for step in range(1, 4):
        frame = frames[-1].copy()
        frame[0, step, :] = 1
        frames.append(frame)
    path = tmp_path / "completion.gif"
    save_gif(path, frames, 2, scale=4, frame_ms=40)
    with Image.open(path) as picture:
        assert picture.n_frames == len(frames)
        assert picture.size == (28, 24)
    assert [p.name for p in tmp_path.iterdir()] == ["completion.gif"]
