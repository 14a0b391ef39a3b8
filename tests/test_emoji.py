"""Colour: the emoji dataset, training and scoring on it, the channel order of the shipped
configuration, and the app drawing and completing in colour."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog
from test_causality import input_gradients, visible_region, without_head_relus

import gui.palette as palette_module
from conftest import bundle, close, tiny_model
from gui.main_window import MainWindow, start_demo
from gui.palette import PALETTE, colour_levels
from model import build_model, load_model, read_card
from model.images import load_image
from model.registry import SAMPLE_COLOUR, SAMPLE_DIGIT, sample_picture
from model.training import emoji, evaluate, showcase, train
from model.training import settings as train_settings
from model.training.data import DatasetError

SMILE, HEART, APPLE = 0x1F600, 0x2764, 0x1F34E
# A quarter of the font's glyphs: renders in a fraction of a second, still splits three ways.
SUBSET = (range(0x1F300, 0x1F400),)
# The configuration of the shipped emoji-color model, at a size a gradient test can afford:
# the kernel sizes, colours and levels set the masks; width and depth do not.
SHIPPED = dict(architecture="gated", channels=3, distribution="categorical", levels=8,
               first_kernel_size=7, kernel_size=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def font():
    """The Noto Color Emoji font, which CI installs; without it these tests fail and say how
    to install it, rather than pass without having run."""
    try:
        return emoji.open_font(emoji.find_font())
    except DatasetError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def emoji_cache(font, tmp_path_factory):
    """A cache folder for the SUBSET of glyphs (8 x 8 renders are made on first use)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(emoji, "SEARCHED", SUBSET)
    yield tmp_path_factory.mktemp("emoji-cache")
    patch.undo()


# The dataset


def test_a_missing_font_is_an_error_that_says_how_to_install_it(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install -y fonts-noto-color-emoji"):
        emoji.find_font(tmp_path / "NotoColorEmoji.ttf")


def test_the_font_has_emoji_glyphs_and_no_latin_letters(font):
    found = emoji.codepoints(font, (range(0x1F600, 0x1F610), range(0x41, 0x44)))
    assert found == list(range(0x1F600, 0x1F610))


def test_glyphs_render_in_colour_on_black(font):
    images = emoji.render(font, [SMILE, HEART, APPLE], size=24)
    assert images.shape == (3, 3, 24, 24) and images.dtype == np.uint8
    corners = images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()  # the background is black
    r, g, b = (images[:, c].astype(float) for c in range(3))
    assert r[0].mean() > 2 * b[0].mean() and g[0].mean() > 2 * b[0].mean()  # a yellow face
    assert r[1].mean() > 3 * g[1].mean() and r[1].mean() > 3 * b[1].mean()  # a red heart
    assert images.reshape(3, -1).max(1).min() > 200  # every glyph is drawn brightly


def test_the_split_is_fixed_by_codepoint_and_about_eighty_ten_ten():
    cps = range(0x1F300, 0x1FB00)
    splits = [emoji.split_of(cp) for cp in cps]
    assert splits == [emoji.split_of(cp) for cp in cps]
    share = {name: splits.count(name) / len(splits) for name in ("train", "valid", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["valid"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)


def test_splits_are_cached_quantized_and_rebuilt_for_another_font(emoji_cache, monkeypatch):
    parts = {split: emoji.load_emoji(split, 8, 8, emoji_cache) for split in
             ("train", "valid", "test")}
    cache = emoji_cache / "emoji-8.npz"
    assert cache.is_file()
    everything = np.concatenate([cps for _, cps in parts.values()])
    assert len(set(everything.tolist())) == len(everything) > 200  # disjoint, none lost
    for split, (images, cps) in parts.items():
        assert images.shape == (len(cps), 3, 8, 8) and images.max() <= 7
        assert all(emoji.split_of(int(cp)) == split for cp in cps)
    # A second load reads the cache; a different font file makes it render again.
    renders = []
    real_render = emoji.render

    def counted_render(*args, **kwargs):
        renders.append(args[1])
        return real_render(*args, **kwargs)

    monkeypatch.setattr(emoji, "render", counted_render)
    assert np.array_equal(emoji.load_emoji("test", 8, 8, emoji_cache)[0], parts["test"][0])
    assert renders == []
    monkeypatch.setattr(emoji, "font_digest", lambda path: "another font")
    assert np.array_equal(emoji.load_emoji("test", 8, 8, emoji_cache)[0], parts["test"][0])
    assert len(renders) == 1


def test_a_cache_brought_to_a_machine_without_the_font_is_used_as_it_is(
        emoji_cache, tmp_path, monkeypatch):
    expected = emoji.load_emoji("valid", 8, 8, emoji_cache)
    font_sha256 = emoji.description(8, emoji_cache)["font_sha256"]
    monkeypatch.setattr(emoji, "FONT_PATHS", (tmp_path / "no-font.ttf",))
    images, cps = emoji.load_emoji("valid", 8, 8, emoji_cache)
    assert np.array_equal(images, expected[0]) and np.array_equal(cps, expected[1])
    assert emoji.description(8, emoji_cache)["font_sha256"] == font_sha256
    # Without a cache there is nothing to train on, and the message says how to get the font.
    with pytest.raises(DatasetError, match="apt-get install -y fonts-noto-color-emoji"):
        emoji.load_emoji("valid", 8, 8, tmp_path / "empty")


# Training and measuring


EMOJI_ARGS = ["--dataset", "emoji", "--image-size", "8", "--layers", "1",
              "--hidden-channels", "6", "--first-kernel-size", "3", "--batch-size", "8",
              "--limit-train", "16", "--limit-eval", "8", "--device", "cpu"]


def emoji_train_args(cache, out, name, *extra):
    return ["--data", str(cache), "--name", name, "--output-dir", str(out),
            "--checkpoint-dir", str(out / f"{name}-checkpoints"), *EMOJI_ARGS, *extra]


@pytest.fixture(scope="module")
def trained_emoji(emoji_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("emoji-model")
    assert train.main(emoji_train_args(emoji_cache, out, "tiny", "--epochs", "1",
                                       "--hflip")) == 0
    return out / "tiny"


def test_training_on_emoji_makes_an_rgb_model_and_says_so_on_its_card(trained_emoji):
    card = read_card(trained_emoji)
    cfg = card["config"]
    assert (cfg.channels, cfg.height, cfg.width, cfg.levels) == (3, 8, 8, emoji.LEVELS)
    assert cfg.distribution == "categorical" and cfg.num_classes == 0
    assert card["dataset"] == "emoji" and card["data_mode"] == "rgb" and card["steps"] == 2
    assert card["training"]["hflip"] is True
    assert card["emoji"]["image_size"] == 8 and card["emoji"]["glyphs"] > 200
    assert sum(card["emoji"]["split_images"].values()) == card["emoji"]["glyphs"]
    assert card["test_bits_per_dim"] == pytest.approx(
        card["test_nll_nats"] / (3 * 8 * 8 * math.log(2)))
    assert "--dataset emoji" in card["command"] and len(card["learning_curve"]) == 1
    assert load_model(trained_emoji).config == cfg


def test_evaluate_scores_the_emoji_test_split_from_the_card(trained_emoji, emoji_cache, capsys):
    capsys.readouterr()
    args = ["--model", str(trained_emoji), "--data", str(emoji_cache), "--limit", "8"]
    assert evaluate.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 8
    assert result["nll_nats"] == pytest.approx(read_card(trained_emoji)["test_nll_nats"],
                                               rel=1e-5)
    assert evaluate.main([*args, "--dataset", "mnist"]) == 2
    assert "trained on emoji, not on mnist" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--mode", "gray"], "--mode gray only applies to MNIST"),
    (["--num-classes", "10"], "--num-classes must be 0"),
])
def test_emoji_training_refuses_mnist_settings(emoji_cache, tmp_path, capsys, extra, message):
    assert train.main(emoji_train_args(emoji_cache, tmp_path, "bad", *extra)) == 2
    assert message in capsys.readouterr().err


def test_mnist_training_still_needs_its_data_folder(tmp_path, capsys):
    assert train.main(["--name", "x", "--output-dir", str(tmp_path),
                       "--checkpoint-dir", str(tmp_path / "checkpoints")]) == 2
    assert "--data DIR" in capsys.readouterr().err


def test_showcase_draws_samples_and_completions_of_test_emoji(trained_emoji, emoji_cache,
                                                              tmp_path, monkeypatch):
    monkeypatch.setattr(showcase, "TEST_IMAGES", 3)
    output = tmp_path / "sheet.png"
    assert showcase.main(["--model", str(trained_emoji), "--data", str(emoji_cache),
                          "--output", str(output)]) == 0
    with Image.open(output) as sheet:
        assert sheet.mode == "RGB"
        assert sheet.height == 4 * (88 + showcase.GAP)  # 2 sample rows, bottom half, hole


# The channel order of the shipped configuration


def test_shipped_configuration_sees_no_later_pixel_and_no_later_or_own_channel():
    model = tiny_model(**SHIPPED, layers=2, hidden_channels=6, height=6, width=7)
    grad = input_gradients(model)
    H, W = 6, 7
    for i in range(H):
        for j in range(W):
            for c in range(3):
                g = grad[i, j, c]  # (C, H, W): what output channel c at (i, j) depends on
                assert g.flatten(1)[:, i * W + j + 1:].abs().sum() == 0, (i, j, c)
                assert g[c:, i, j].abs().sum() == 0, (i, j, c)  # not its own channel or later


def test_shipped_configuration_sees_every_earlier_pixel_and_channel():
    model = without_head_relus(tiny_model(**SHIPPED, layers=3, hidden_channels=12,
                                          height=7, width=8))
    cfg = model.config
    grad = input_gradients(model)
    for i in range(cfg.height):
        for j in range(cfg.width):
            for c in range(3):
                seen = grad[i, j, c].abs().sum(0)
                for r, col in visible_region(cfg, i, j):
                    assert seen[r, col] > 0, f"output {(i, j, c)} is blind to {(r, col)}"
                assert (grad[i, j, c][:c, i, j] != 0).all(), f"{(i, j, c)} misses R or G"


# The app


@pytest.fixture
def colour_window(qtbot, tmp_path, monkeypatch):
    model = tiny_model(**SHIPPED, layers=2, hidden_channels=6, height=8, width=8)
    bundle(tmp_path, monkeypatch, card=dict(dataset="emoji", data_mode="rgb"),
           **{"tiny-rgb": model})
    window = MainWindow("tiny-rgb")
    window.show()
    yield window
    close(window)
    assert not window.runner.is_running()


def test_a_colour_model_gets_a_colour_canvas_and_pen(colour_window):
    drawing = colour_window.canvas.drawing
    assert drawing.values.shape == (3, 8, 8) and drawing.levels == 8
    assert colour_window.colour_pen_action.isVisible()
    assert not colour_window.options.pen_box.isEnabled()
    assert colour_window.canvas.pen_colour == (7, 7, 7)  # white to begin with


def test_the_colour_pen_draws_the_quantized_colour(colour_window, qtbot, monkeypatch):
    canvas, pen = colour_window.canvas, colour_window.colour_pen
    red = dict(PALETTE)["Red"]  # e53935: 229, 57, 53 of 255 -> levels 7, 1, 1 of 8
    button = next(b for b, colour in pen.swatches if colour == QColor(red))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert canvas.pen_colour == colour_levels(QColor(red), 8) == (7, 1, 1)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton,
                     pos=canvas.cell_rect(2, 3).center().toPoint())
    assert canvas.drawing.values[:, 2, 3].tolist() == [7, 1, 1]
    # The picker: any colour, quantized the same way.
    monkeypatch.setattr(QColorDialog, "getColor",
                        staticmethod(lambda *args: QColor(10, 200, 130)))
    qtbot.mouseClick(pen.current, Qt.MouseButton.LeftButton)
    assert canvas.pen_colour == (0, 6, 4)
    assert pen.shown_colour() == palette_module.levels_colour((0, 6, 4), 8)


@pytest.mark.parametrize("tool", ["eraser", "rect_erase", "erase_below"])
def test_choosing_a_colour_switches_to_the_pen(colour_window, qtbot, tool):
    canvas, pen = colour_window.canvas, colour_window.colour_pen
    colour_window.tool_actions[tool].trigger()
    assert canvas.tool == tool
    button = next(b for b, colour in pen.swatches if colour == QColor(dict(PALETTE)["Red"]))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert canvas.tool == "pen" and colour_window.tool_actions["pen"].isChecked()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton,
                     pos=canvas.cell_rect(1, 1).center().toPoint())
    assert canvas.drawing.values[:, 1, 1].tolist() == [7, 1, 1]  # red ink, not an erasure
    assert canvas.drawing.known[1, 1]


def test_a_colour_image_is_completed_r_g_b_pixel_by_pixel(colour_window, qtbot):
    drawing = colour_window.canvas.drawing
    rng = np.random.default_rng(0)
    drawing.values[:] = rng.integers(0, 8, drawing.values.shape)
    drawing.known[4:] = False
    before_values, before_known = drawing.snapshot()
    shown = []  # the pixels that appeared while the completion ran
    colour_window.runner.progressed.connect(
        lambda samples: shown.append(int(colour_window.canvas.drawing.known.sum())))
    colour_window.options.set_pixels_per_second(100)
    with qtbot.waitSignal(colour_window.runner.finished, timeout=30000):
        colour_window.complete()
    values, known = drawing.snapshot()
    assert known.all()
    assert np.array_equal(values[:, before_known], before_values[:, before_known])
    assert colour_window.runner.total == 32 * 3  # R, G and B of every unknown pixel
    assert len(shown) > 1 and shown[0] < 64 and shown == sorted(shown)
    assert colour_window.insight.caption.startswith("(7, 7): drew B")
    # The canvas shows colours, not greys.
    image = colour_window.canvas.grab().toImage()
    colours = {image.pixelColor(x, y).getRgb()[:3] for x in range(0, image.width(), 5)
               for y in range(0, image.height(), 5)}
    assert any(len(set(rgb)) == 3 for rgb in colours)


def test_opening_a_picture_with_a_colour_model_reads_it_in_colour(colour_window, tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, :4] = (230, 60, 50)  # red on the left, blue on the right
    pixels[:, 4:] = (30, 60, 220)
    Image.fromarray(pixels).save(tmp_path / "two.png")
    assert colour_window.open_image(tmp_path / "two.png")
    values = colour_window.canvas.drawing.values
    assert values[:, 0, 0].tolist() == [7, 1, 1] and values[:, 0, 7].tolist() == [0, 1, 6]


def yellow(pixels: np.ndarray) -> np.ndarray:
    """Where (C, ...) colour levels of 8 are yellow: much red and green, little blue."""
    return (pixels[0] >= 5) & (pixels[1] >= 4) & (pixels[2] <= 2)


def test_the_sample_pictures_are_a_grey_digit_and_a_colour_smiley():
    assert sample_picture(1) == SAMPLE_DIGIT and sample_picture(3) == SAMPLE_COLOUR
    smiley = load_image(SAMPLE_COLOUR, 24, 24, 3, 8)
    assert yellow(smiley).mean() > 0.4  # the face
    assert (smiley[:, 0, 0] == 0).all() and (smiley[:, 8, 8] < 3).all()  # black, an eye


def test_the_demo_of_a_colour_model_completes_the_bottom_half_of_the_smiley(colour_window,
                                                                            qtbot):
    smiley = load_image(SAMPLE_COLOUR, 8, 8, 3, 8)
    with qtbot.waitSignal(colour_window.runner.finished, timeout=30000):
        start_demo(colour_window, pixels_per_second=1000)
    values, known = colour_window.canvas.drawing.snapshot()
    assert known.all() and colour_window.runner.total == 4 * 8 * 3
    assert np.array_equal(values[:, :4], smiley[:, :4])  # the top half, as opened
    assert yellow(values[:, :4]).any()


def test_a_pen_colour_must_fit_the_drawing(colour_window):
    with pytest.raises(ValueError, match="3 levels within 0..7"):
        colour_window.canvas.set_pen_colour((8, 0, 0))


# As the README gives it.
RECOMMENDED_COMMAND = ["--dataset", "emoji", "--name", "emoji-color", "--layers", "8",
                       "--hidden-channels", "48", "--batch-size", "32", "--epochs", "50",
                       "--hflip", "--time-budget", "45"]


def test_the_recommended_training_command_describes_a_small_rgb_model():
    settings = train_settings.with_defaults(train_settings.given_settings(RECOMMENDED_COMMAND))
    train_settings.check_settings(settings)
    cfg = train_settings.model_config(settings)
    assert (cfg.channels, cfg.height, cfg.levels, cfg.num_classes) == (3, 24, 8, 0)
    assert cfg.layers == 8 and cfg.hidden_channels == 48 and settings["hflip"]
    weights_mb = sum(p.numel() for p in build_model(cfg).parameters()) * 4 / 2**20
    assert weights_mb < 20
