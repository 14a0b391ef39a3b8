import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import gui.image_io
import model.images
from gui.image_io import (
    ImageFileError,
    in_memory_png,
    levels_to_rgb,
    load_image,
    load_mask,
    save_gif,
    save_png,
    to_qimage,
)
from model.images import enlarge, write_png


def digit_on_white(height=40, width=30) -> np.ndarray:
    """A black bar (a "1") on a white page: the usual scanned-digit look."""
    page = np.full((height, width), 255, np.uint8)
    page[10:30, 12:18] = 0
    return page


def grey_png(width: int, height: int, data: bytes) -> bytes:
    """An 8-bit grey PNG of that size around already-compressed image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds almost no data: Pillow opens it lazily."""
    return grey_png(width, height, zlib.compress(b"\0" * 16))


def solid_png(width: int, height: int, value: int) -> bytes:
    """A whole PNG of one grey, compressed row by row: huge images cost little to make."""
    compressor = zlib.compressobj(1)
    row = b"\0" + bytes([value]) * width  # filter type 0, then the row's bytes
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return grey_png(width, height, data)


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
    # 4 levels: the bins of bytes 0-63, 64-127, 128-191, 192-255, whose edges lie at
    # 16448.2, 32896.5 and 49344.7 in 16 bits; rounded to 8 bits each pair would be one level.
    path = tmp_path / "deep.png"
    ramp = np.array([[0, 16447, 16449, 32895, 32897, 49343, 49345, 65535]], np.uint16)
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


@pytest.mark.parametrize("channels, levels", [(1, 2), (1, 16), (3, 4)])
def test_a_picture_in_memory_loads_as_the_same_file_on_disk_does(tmp_path, channels, levels):
    path = tmp_path / "digit.png"
    Image.fromarray(digit_on_white()).save(path)
    in_memory = io.BytesIO(path.read_bytes())
    assert np.array_equal(load_image(in_memory, 6, 7, channels, levels),
                          load_image(path, 6, 7, channels, levels))


@pytest.mark.parametrize("content, problem", [
    (b"This is a text, not a picture.", "is not an image"),
    (png_header_only(11_000, 10_000), "is too large"),
])
def test_a_bad_picture_in_memory_is_refused_by_its_name(content, problem):
    picture = io.BytesIO(content)
    picture.name = "the pasted picture"
    with pytest.raises(ImageFileError, match=f"the pasted picture {problem}"):
        load_image(picture, 6, 7, 1, 2)


def test_a_qimage_becomes_a_png_in_memory_that_loads_as_its_file_does(qapp, tmp_path):
    image = to_qimage(np.arange(12, dtype=np.uint8).reshape(1, 3, 4) % 4, 4, scale=3)
    image.save(str(tmp_path / "picture.png"))
    in_memory = in_memory_png(image, "the picture")
    assert in_memory.name == "the picture"
    assert np.array_equal(load_image(in_memory, 3, 4, 1, 4),
                          load_image(tmp_path / "picture.png", 3, 4, 1, 4))


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


def test_a_10000_by_10000_picture_is_fitted_without_gigabytes_of_floats(tmp_path):
    path = tmp_path / "poster.png"
    path.write_bytes(solid_png(10_000, 10_000, 255))
    tracemalloc.start()  # sees NumPy's arrays (Pillow's own ~100 MB of decoded bytes aside)
    try:
        loaded = load_image(path, 6, 7, 1, 4, invert="no")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(loaded, np.full((1, 6, 7), 3))
    assert peak < 20_000_000  # a float copy of every pixel would be 800 MB


def block_digit(mode: str) -> Image.Image:
    """A 1120x1120 picture (40 source pixels per pixel of a 28x28 model) of a light bar
    on black whose edges fall on model-pixel boundaries, in any Pillow mode."""
    page = np.zeros((28, 28), np.uint8)
    page[4:24, 12:16] = 255
    big = page.repeat(40, axis=0).repeat(40, axis=1)
    if mode == "I;16":
        return Image.fromarray(big.astype(np.uint16) * 257)
    picture = Image.fromarray(big)
    if mode == "P":
        return picture.convert("RGB").convert("P")
    if mode == "RGBA":
        rgba = np.zeros((*big.shape, 4), np.uint8)
        rgba[..., :3] = 255
        rgba[..., 3] = big  # a white bar on transparent
        return Image.fromarray(rgba, "RGBA")
    return picture.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "P", "RGBA", "1"])
def test_large_pictures_are_shrunk_in_every_mode_without_changing_the_result(tmp_path, mode):
    path = tmp_path / "large.png"
    block_digit(mode).save(path)
    with Image.open(path) as picture:
        assert picture.mode == mode
    expected = np.zeros((28, 28), np.uint8)
    expected[4:24, 12:16] = 1
    np.testing.assert_array_equal(load_image(path, 28, 28, 1, 2)[0], expected)


def test_a_colour_palette_is_read_in_colour(tmp_path):
    path = tmp_path / "palette.png"
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[:2, :, 0] = 255  # red top half on black
    Image.fromarray(colour).convert("P").save(path)
    loaded = load_image(path, 4, 4, 3, 2, invert="no")
    assert loaded[0, :2].all() and not loaded[1:].any() and not loaded[0, 2:].any()


def mask_picture(height, width, white_rows) -> Image.Image:
    mask = np.zeros((height, width), np.uint8)
    mask[white_rows] = 255
    return Image.fromarray(mask)


def test_a_mask_of_the_models_size_marks_its_white_pixels(tmp_path):
    path = tmp_path / "mask.png"
    pixels = np.array([[0, 127, 128, 255]], np.uint8).repeat(3, axis=0)
    Image.fromarray(pixels).save(path)
    assert load_mask(path, 3, 4).tolist() == [[False, False, True, True]] * 3


def test_a_mask_of_the_images_size_is_fitted_like_the_image(tmp_path):
    image, mask = tmp_path / "wide.png", tmp_path / "mask.png"
    Image.new("L", (40, 10)).save(image)
    mask_picture(10, 40, slice(5, None)).save(mask)  # the bottom half of the image
    completed = load_mask(mask, 8, 8, image=image)
    # 40x10 fits as 8x2 in rows 3-4, like the image; the padding around it is known.
    assert completed.sum(axis=1).tolist() == [0, 0, 0, 0, 8, 0, 0, 0]


def test_a_mask_of_another_size_is_refused_naming_both_sizes(tmp_path):
    image, mask = tmp_path / "digit.png", tmp_path / "mask.png"
    Image.new("L", (40, 30)).save(image)
    Image.new("L", (9, 9)).save(mask)
    with pytest.raises(ImageFileError, match=r"mask.png is 9x9 pixels; a mask must be 7x6 "
                                             r"\(the model's size\) or 40x30 \(the size of "
                                             r".*digit.png\)"):
        load_mask(mask, 6, 7, image=image)


def test_unreadable_masks_are_refused_like_images(tmp_path):
    path = tmp_path / "mask.png"
    path.write_bytes(b"")
    with pytest.raises(ImageFileError, match="mask.png: the file is empty"):
        load_mask(path, 6, 7)


@pytest.mark.parametrize("channels, levels", [(1, 2), (1, 16), (3, 4)])
def test_write_png_round_trips_and_shows_what_the_canvas_shows(tmp_path, channels, levels):
    values = np.random.default_rng(1).integers(0, levels, (channels, 6, 7), np.uint8)
    write_png(tmp_path / "big.png", values, levels, scale=2)
    with Image.open(tmp_path / "big.png") as picture:
        assert picture.size == (14, 12)
        np.testing.assert_array_equal(np.asarray(picture.convert("RGB")),
                                      enlarge(levels_to_rgb(values, levels), 2))
    write_png(tmp_path / "small.png", values, levels)
    np.testing.assert_array_equal(
        load_image(tmp_path / "small.png", 6, 7, channels, levels, invert="no"), values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "small.png"]


def test_write_png_names_the_path_and_leaves_no_temporary_file(tmp_path):
    with pytest.raises(OSError, match="Cannot save .*no such folder"):
        write_png(tmp_path / "no such folder" / "out.png", np.zeros((1, 2, 2), np.uint8), 2)
    assert list(tmp_path.iterdir()) == []


def test_the_gui_module_reexports_the_qt_free_readers_and_writers():
    for name in ("IMAGE_SUFFIXES", "ImageFileError", "load_image", "load_mask", "levels_to_rgb",
                 "save_gif"):
        assert getattr(gui.image_io, name) is getattr(model.images, name)
    assert gui.image_io.save_png is model.images.write_png


def test_colour_pictures_are_never_auto_inverted_and_transparency_turns_black(tmp_path):
    # A dark red apple on a light border, and a transparent surround: what an emoji PNG is.
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (230, 230, 230)
    rgba[..., 3] = 255
    rgba[2:6, 2:6] = (120, 10, 10, 255)
    Image.fromarray(rgba).save(tmp_path / "light.png")
    light = load_image(tmp_path / "light.png", 8, 8, 3, 8)
    assert light[:, 0, 0].tolist() == [7, 7, 7] and light[:, 3, 3].tolist() == [3, 0, 0]
    rgba[..., 3] = 0
    rgba[2:6, 2:6, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    clear = load_image(tmp_path / "transparent.png", 8, 8, 3, 8)
    assert clear[:, 0, 0].tolist() == [0, 0, 0] and clear[:, 3, 3].tolist() == [3, 0, 0]
    # The grey models keep their convention: the same light picture is inverted.
    assert load_image(tmp_path / "light.png", 8, 8, 1, 2)[0, 0, 0] == 0


def test_one_quantisation_for_bytes_and_brightness_for_every_level_count():
    """Datasets bin bytes, opened pictures bin brightness: the same bins, for every K."""
    from model.images import levels_of_bytes, quantize

    bytes_ = np.arange(256)
    for levels in range(2, 257):
        by_bytes = levels_of_bytes(bytes_.astype(np.uint8), levels)
        np.testing.assert_array_equal(quantize(bytes_ / 255, levels), by_bytes, str(levels))
        assert by_bytes[0] == 0 and by_bytes[255] == levels - 1
        assert np.all(np.diff(by_bytes.astype(int)) >= 0)
