"""Panels a person can read: the surprise heatmap comes with a legend in nats per pixel and
reads out the pixel under the mouse; the Insight panel labels what it shows, p(ink) against
0-1 with the drawn value marked, or a histogram over the levels with its axes."""

import numpy as np
import pytest
from PySide6.QtCore import QRectF
from test_canvas import hover, stroke

from gui.insight import DistributionView
from model.distributions import pixel_surprise


def test_the_surprise_heatmap_has_a_legend_and_reads_out_the_pixel_under_the_mouse(window,
                                                                                   qtbot):
    canvas = window.canvas
    stroke(qtbot, canvas, [(2, 1), (2, 6)])
    canvas.drawing.known[6:] = False
    window.surprise_action.trigger()  # View > Surprise heatmap
    legend = canvas.legend_rect()
    assert not legend.isEmpty() and legend.top() >= canvas.cell_rect(7, 0).bottom()
    # Nats per pixel from 0; a uniform guess between ink and background costs ln 2.
    assert [text for _, text in canvas.legend_ticks()] == ["0", "0.69 chance", "≥ 1.39 nats"]
    hover(canvas, (2, 3))
    nats = pixel_surprise(window.model, canvas.drawing.values)[2, 3]
    assert canvas.heatmap_readout().startswith(f"(2, 3): {nats:.2f} nats")
    hover(canvas, (7, 0))
    assert "unknown" in canvas.heatmap_readout()
    window.surprise_action.trigger()
    assert canvas.legend_rect().isEmpty()


def texts_clear_of_each_other(view):
    """Every label lies inside the panel, and no two overlap."""
    texts = view.chart().texts
    inside = QRectF(view.rect())
    for k, (rect, text, _) in enumerate(texts):
        width = view.fontMetrics().horizontalAdvance(text)
        assert width <= rect.width() + 1 and inside.contains(rect), text
        for other, other_text, _ in texts[k + 1:]:
            assert not rect.intersects(other), (text, other_text)


@pytest.fixture
def view(qtbot):
    widget = DistributionView()
    qtbot.addWidget(widget)
    widget.resize(260, 160)
    return widget


@pytest.mark.parametrize(("picked", "drawn", "end"), [(1, "ink", 1.0), (0, "background", 0.0)])
def test_insight_shows_p_ink_as_a_bar_against_zero_to_one_with_the_drawn_value_marked(
        view, picked, drawn, end):
    """It was one unlabelled orange bar beside "p(ink) = 0.000"."""
    view.show_distribution(np.array([0.3, 0.7]), picked, 4, 5)
    chart = view.chart()
    assert view.caption == "(4, 5): p(ink) = 0.700"
    for label in ("p(ink)", "0", "0.5", "1", f"drawn: {drawn}"):
        assert label in chart.text(), label
    track, p_ink = chart.fills[0][0], chart.fills[1][0]  # 0-1, and p(ink) filled from 0
    assert p_ink.left() == track.left() and p_ink.width() == pytest.approx(0.7 * track.width())
    assert chart.marker.x() == pytest.approx(track.left() + end * track.width())
    texts_clear_of_each_other(view)


@pytest.mark.parametrize(("channels", "channel", "axis"), [(1, 0, "level"), (3, 2, "B level")])
def test_insight_shows_k_levels_as_a_histogram_with_its_axes(view, channels, channel, axis):
    probs = np.full(16, 0.02)
    probs[9] = 0.7
    view.show_distribution(probs / probs.sum(), 9, 3, 3, channel, channels)
    chart = view.chart()
    for label in ("p", "1", "0", "7", "15", axis):  # p from 0 to 1; levels 0, 7 and 15
        assert label in chart.text(), label
    bars = [rect for rect, _ in chart.fills]
    assert len(bars) == 16 and bars[9].height() == max(bar.height() for bar in bars)
    assert chart.marker.x() == pytest.approx(bars[9].center().x(), abs=1)
    assert chart.marker.y() <= bars[9].top()  # above the drawn level's bar
    texts_clear_of_each_other(view)
