"""Nothing on screen outlives what it describes: the candidates strip holds candidates only
while the canvas shows one of them (and frames that one), the status bar's count and the
Insight panel go with the completion they describe, and counts are in pixels."""

import numpy as np
import pytest
from PySide6.QtCore import QRectF, Qt
from test_canvas import stroke

from conftest import answer, choose_model, erase_bottom
from gui.gallery import CandidateGallery


def complete(window, qtbot, candidates=1):
    window.options.candidates_box.setValue(candidates)
    window.options.fixed_seed_box.setChecked(True)
    with qtbot.waitSignal(window.runner.finished, timeout=20_000):
        window.complete()


def four_candidates(window, qtbot):
    erase_bottom(window)
    complete(window, qtbot, candidates=4)
    images = window.candidate_images
    assert len({image.tobytes() for image in images}) == 4  # all different
    return images


def test_the_strip_frames_the_candidate_on_the_canvas(window, qtbot):
    images = four_candidates(window, qtbot)
    gallery = window.gallery
    assert gallery.count == 4 and gallery.on_canvas == 0
    qtbot.mouseClick(gallery, Qt.MouseButton.LeftButton,
                     pos=gallery.cells()[2].image.center().toPoint())
    assert np.array_equal(window.canvas.drawing.values, images[2])
    assert gallery.on_canvas == 2
    window.adopt_candidate(3)
    assert gallery.on_canvas == 3
    window.undo_action.trigger()
    assert gallery.on_canvas == 2


def test_of_candidates_alike_the_one_put_on_the_canvas_is_framed(window, qtbot):
    erase_bottom(window)
    window.options.temperature_box.setValue(0)  # the most likely value: all four alike
    window.options.class_box.setCurrentIndex(window.options.class_box.findData(None))
    complete(window, qtbot, candidates=4)
    assert len({image.tobytes() for image in window.candidate_images}) == 1
    window.adopt_candidate(2)
    assert window.gallery.on_canvas == 2


def test_the_strip_clears_when_the_picture_changes_and_returns_with_it(window, qtbot):
    four_candidates(window, qtbot)
    window.adopt_candidate(1)
    stroke(qtbot, window.canvas, [(0, 0)])
    assert window.gallery.count == 0  # the picture is none of them now
    window.undo_action.trigger()
    assert window.gallery.count == 4 and window.gallery.on_canvas == 1
    window.undo_action.trigger()  # the adoption
    window.undo_action.trigger()  # the completion
    assert window.gallery.count == 0
    window.adopt_candidate(2)  # nothing to adopt into a picture they do not belong to
    assert not window.canvas.drawing.known.all()


def test_the_strip_clears_when_the_model_changes(window, qtbot):
    """An old black-and-white candidate adopted into the 16-level model wrote level 1 of 15."""
    four_candidates(window, qtbot)
    answer(qtbot, "Keep the picture")
    choose_model(window, "gray")
    assert window.gallery.count == 0
    kept = window.canvas.drawing.values.copy()
    window.adopt_candidate(2)
    assert np.array_equal(window.canvas.drawing.values, kept)
    assert set(np.unique(kept)) <= {0, 15}


@pytest.mark.parametrize("size", [(861, 130), (500, 300), (300, 500)])
def test_candidates_are_laid_out_in_even_rows_with_labels_under_their_thumbnails(qtbot, size):
    """Sixteen wrapped 13 + 3, and the "kept" label covered a thumbnail."""
    gallery = CandidateGallery()
    qtbot.addWidget(gallery)
    gallery.resize(*size)
    gallery.show_candidates(np.zeros((16, 1, 28, 28), np.uint8), 2, chosen=3,
                            classes=[7] * 16, on_canvas=3)
    cells = gallery.cells()
    rows = {}
    for cell in cells:
        rows.setdefault(cell.image.top(), []).append(cell)
    counts = [len(row) for row in rows.values()]
    assert max(counts) - min(counts) <= 1, counts
    inside = QRectF(gallery.rect())
    for k, cell in enumerate(cells):
        assert inside.contains(cell.image) and inside.contains(cell.label)
        assert cell.label.top() >= cell.image.bottom()  # under its own thumbnail
        for other in cells[k + 1:]:
            assert not cell.image.intersects(other.image)
            assert not cell.label.intersects(other.image)
            assert not other.label.intersects(cell.image)
    assert gallery.label(3) == "4·7★"


def test_status_bar_and_insight_reset_on_undo_new_picture_and_new_model(window, qtbot):
    def described():
        return bool(window.progress_label.text()) or window.insight.probs is not None

    erase_bottom(window)
    complete(window, qtbot)
    assert window.progress_label.text().startswith("32/32 px") and described()
    window.undo_action.trigger()
    assert not described()

    complete(window, qtbot)
    answer(qtbot, "Discard")
    window.new_action.trigger()
    assert not described()

    erase_bottom(window)
    complete(window, qtbot)
    answer(qtbot, "Keep the picture")
    choose_model(window, "gray")
    assert window.model_name == "gray" and not described()


def test_counts_are_pixels_and_an_instant_run_tells_how_long_it_took(window, qtbot):
    """A colour run counted channels ("792/792" for 264 pixels); an instant one "0 px/s"."""
    answer(qtbot, "Discard")
    choose_model(window, "rgb")
    drawing = window.canvas.drawing
    drawing.known[3:] = False  # 18 pixels of 6x6, three channels each
    drawing.values[:, 3:] = 0
    window.options.set_pixels_per_second(0)
    complete(window, qtbot, candidates=2)
    text = window.progress_label.text()
    assert text.startswith("18/18 px × 2 candidates in ")
    seconds = float(text.split(" in ")[1].split(" s")[0])
    assert 0 < seconds < 20
    rate = text.rpartition("(")[2]  # "(180 px/s)": a whole rate, never a bare 0
    assert rate.endswith(" px/s)") and int(rate.split()[0]) > 0, text
