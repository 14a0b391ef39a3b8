"""The "How it works" view: a receptive field found by back-propagation, the masks read from
the model, the hover link to the canvas and the 3x4 raster-order animation."""

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack

from conftest import bundle, tiny_model
from gui.canvas import PixelCanvas
from gui.document import Drawing
from gui.how_it_works import HowItWorksWindow, RasterDemo
from gui.main_window import MainWindow
from model.receptive import BLIND_SPOT, CURRENT, ReceptiveField, field_map, kernels

pytestmark = pytest.mark.usefixtures("one_thread")  # many millisecond-sized passes


def causal_rectangle(cfg, i, j) -> set[tuple[int, int]]:
    """What a gated model sees from (i, j): every earlier pixel within its stacks' reach."""
    kernel_sizes = [cfg.first_kernel_size] + [cfg.kernel_size] * (cfg.layers - 1)
    reach = sum(k // 2 for k in kernel_sizes)
    above = {(r, c) for r in range(max(0, i - 1 - reach), i)
             for c in range(max(0, j - reach), min(cfg.width, j + reach + 1))}
    return above | {(i, c) for c in range(max(0, j - reach), j)}


def seen(visible: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(*(a.tolist() for a in np.nonzero(visible)), strict=True))


@pytest.mark.parametrize(("colours", "first_k", "k"), [(1, 3, 3), (1, 5, 3), (3, 3, 3)])
def test_gated_field_from_gradients_is_every_earlier_pixel_in_reach(colours, first_k, k):
    model = tiny_model(architecture="gated", channels=colours, first_kernel_size=first_k,
                       kernel_size=k, layers=3, hidden_channels=6, height=7, width=8)
    field = ReceptiveField(model)
    for i in range(7):
        for j in range(8):
            assert seen(field.visible(i, j)) == causal_rectangle(model.config, i, j), (i, j)
            assert (field_map(field.visible(i, j), i, j) != BLIND_SPOT).all()


def test_classic_field_shows_the_blind_spot():
    model = tiny_model(architecture="pixelcnn", first_kernel_size=3, kernel_size=3, layers=3,
                       height=8, width=9)
    field = ReceptiveField(model)
    i, j = 5, 3
    visible = field.visible(i, j)
    order = np.arange(8 * 9).reshape(8, 9)
    assert not visible[order >= i * 9 + j].any()  # nothing at or after the pixel
    assert not visible[i - 1, j + 2]  # one row up, two to the right: the blind spot
    assert visible[i - 3, j + 3] and visible[i - 1, j + 1]  # seen further up, and nearer
    codes = field.field_map(i, j)
    assert codes[i, j] == CURRENT
    assert codes[i - 1, j + 2] == BLIND_SPOT
    assert codes[i - 1, j + 1] != BLIND_SPOT


def test_the_field_comes_from_the_weights_not_from_the_architecture():
    model = tiny_model(architecture="gated", layers=3, height=7, width=8)
    with torch.no_grad():
        model.layers[0].vertical.weight.zero_()  # the image no longer reaches the rows above
    visible = ReceptiveField(model).visible(4, 5)
    assert not visible[:4].any()
    assert visible[4, 2:5].all()  # the row to the left, within the horizontal reach


def test_a_relu_that_is_off_hides_nothing():
    # The head's first ReLU is off everywhere for the random test images; ReLUs only gate a
    # path, so the field is still the layers' and masks' one, not one drawing's.
    model = tiny_model(architecture="gated", layers=3, height=7, width=8)
    with torch.no_grad():
        model.head[1].bias.fill_(-1e3)
    assert seen(ReceptiveField(model).visible(4, 5)) == causal_rectangle(model.config, 4, 5)


def test_kernels_are_read_from_the_mask_buffers():
    classic = tiny_model(architecture="pixelcnn", first_kernel_size=5, kernel_size=3)
    mask_a, mask_b = kernels(classic)
    assert mask_a.taps.shape == (5, 5) and mask_a.taps[2, 2] == 0  # A: the pixel is off
    assert mask_b.taps.shape == (3, 3) and mask_b.taps[1, 1] == 1  # B: its features are on
    assert np.array_equal(mask_a.taps, classic.input_conv.mask[0, 0].numpy())
    classic.input_conv.mask[0, 0, 0, 0] = 0  # change the buffer: the display follows
    assert kernels(classic)[0].taps[0, 0] == 0

    gated = tiny_model(architecture="gated", first_kernel_size=5, kernel_size=3, layers=2)
    vertical_1, horizontal_1, vertical_2, horizontal_2 = kernels(gated)
    assert "mask A" in horizontal_1.title and "mask B" in horizontal_2.title
    assert np.array_equal(horizontal_1.taps[2], [1, 1, 0, np.nan, np.nan], equal_nan=True)
    assert np.array_equal(horizontal_2.taps[1], [1, 1, np.nan], equal_nan=True)
    # The vertical stack is unmasked: its 3x5 kernel covers the pixel's row and two above.
    assert (vertical_1.taps[:3] == 1).all() and np.isnan(vertical_1.taps[3:]).all()
    assert (vertical_2.taps[:2] == 1).all() and np.isnan(vertical_2.taps[2]).all()


@pytest.fixture
def canvas(qtbot):
    canvas = PixelCanvas(QUndoStack())
    canvas.set_drawing(Drawing(1, 7, 8, 2))
    canvas.resize(320, 280)
    qtbot.addWidget(canvas)
    canvas.show()
    return canvas


def test_hovering_the_canvas_moves_the_field(qtbot, canvas):
    models = {"now": tiny_model(architecture="pixelcnn", layers=2, height=7, width=8)}
    window = HowItWorksWindow(canvas, lambda: models["now"])
    qtbot.addWidget(window)
    window.show()
    assert [k.title[:6] for k in window.kernels_view.kernels] == ["Mask A", "Mask B"]
    for row, col in ((2, 3), (5, 6)):
        qtbot.mouseMove(canvas, canvas.cell_rect(row, col).center().toPoint())
        qtbot.waitUntil(lambda r=row, c=col: window.position == (r, c), timeout=5000)
        codes = window.field_view.codes
        assert codes[row, col] == CURRENT
        assert np.array_equal(codes, window.field.field_map(row, col))
        assert f"Pixel ({row}, {col})" in window.field_caption.text()
    # Another model in the main window: the next hover picks it up, masks included.
    models["now"] = tiny_model(architecture="gated", layers=2, height=7, width=8)
    qtbot.mouseMove(canvas, canvas.cell_rect(1, 1).center().toPoint())
    qtbot.waitUntil(lambda: window.position == (1, 1), timeout=5000)
    assert window.field.model is models["now"]
    assert "Vertical" in window.kernels_view.kernels[0].title
    # Off the canvas the last pixel stays.
    qtbot.mouseMove(canvas, canvas.rect().topLeft())
    canvas.hovered.emit(-1, -1)
    assert window.position == (1, 1)


def test_no_gradient_pass_while_a_stroke_is_drawn(qtbot, canvas):
    model = tiny_model(architecture="pixelcnn", layers=2, height=7, width=8)
    window = HowItWorksWindow(canvas, lambda: model)
    qtbot.addWidget(window)
    window.show()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton,
                     pos=canvas.cell_rect(2, 2).center().toPoint())
    qtbot.mouseMove(canvas, canvas.cell_rect(2, 5).center().toPoint())
    qtbot.wait(50)
    assert window.position != (2, 5) and not window.field.is_cached(2, 5)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton,
                       pos=canvas.cell_rect(2, 5).center().toPoint())
    qtbot.waitUntil(lambda: window.position == (2, 5), timeout=5000)
    assert canvas.drawing.values[0, 2, 2:6].all()  # the stroke was drawn all the same


def test_raster_animation_reaches_pixel_12_from_pixels_1_to_11(qtbot):
    demo = RasterDemo(interval_ms=5)
    qtbot.addWidget(demo)
    demo.show()
    demo.replay()
    assert demo.current == 1 and demo.context() == []
    first = demo.grab().toImage()
    qtbot.waitUntil(lambda: demo.current in (12, None), timeout=5000)
    demo.timer.stop()
    demo.step = 12  # the timer may have ticked once more
    assert demo.context() == list(range(1, 12))
    assert demo.caption() == "Pixel 12 is predicted from pixels 1–11."
    assert demo.grab().toImage() != first
    demo.timer.start()
    qtbot.waitUntil(lambda: demo.current is None, timeout=5000)
    assert not demo.timer.isActive()  # it stops at the end
    assert demo.context() == list(range(1, 13))
    demo.replay()
    assert demo.current == 1 and demo.timer.isActive()


def test_frames_step_one_pixel_at_a_time(qtbot):
    demo = RasterDemo()
    qtbot.addWidget(demo)
    demo.replay()
    demo.timer.stop()
    for pixel in range(1, 13):
        assert demo.current == pixel
        demo.advance()
    assert demo.current is None


def test_view_menu_opens_one_window_that_follows_the_model(qtbot, tmp_path, monkeypatch):
    bundle(tmp_path, monkeypatch, tiny=tiny_model(height=8, width=8))
    window = MainWindow("tiny")
    qtbot.addWidget(window)
    window.how_it_works_action.trigger()
    window.how_it_works_action.trigger()
    [view] = window.findChildren(HowItWorksWindow)
    assert view.isVisible()
    assert view.field.model is window.model
