"""GIF export is the animation: the sampled pixels appear in the order they were sampled, a
few per frame at the pace chosen on export, whatever speed the completion ran at; unknown
pixels look as on the canvas, and the finished picture is held at the end."""

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QFileDialog, QMessageBox

from conftest import answer, choose_model, erase_bottom
from gui.animation import SCALE, Pace, PaceDialog, render
from gui.pixel_images import UNKNOWN_TONES

PACE = Pace(seconds=2.0, frames_per_second=10, hold_seconds=3.0)  # 20 frames of 100 ms


def export(window, monkeypatch, path, pace=PACE):
    """File > Export completion as GIF, choosing `pace` and `path`."""
    monkeypatch.setattr(PaceDialog, "ask", lambda *args: pace)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(path), ""))
    window.export_gif_action.trigger()


def read_gif(path):
    with Image.open(path) as gif:
        frames, durations = [], []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
            durations.append(gif.info["duration"])
    return frames, durations


def pixel(frame, row, col):
    """A picture pixel's colour in a frame, from the middle of its top-left quarter."""
    return tuple(frame[row * SCALE + SCALE // 4, col * SCALE + SCALE // 4])


def test_an_instant_completion_exports_as_the_pixels_appearing_in_sampling_order(
        window, qtbot, tmp_path, monkeypatch):
    """It was 3 frames (40 ms, 40 ms, 1.04 s) with the unknown pixels plain black."""
    erase_bottom(window)  # 32 unknown pixels, rows 4 to 7
    start = window.canvas.drawing.snapshot()
    window.options.set_pixels_per_second(0)
    with qtbot.waitSignal(window.runner.finished, timeout=20_000):
        window.complete()
    result = window.canvas.drawing.snapshot()
    export(window, monkeypatch, tmp_path / "completion.gif")
    frames, durations = read_gif(tmp_path / "completion.gif")

    # 20 frames of 100 ms for the 32 pixels: 2 a frame, 16 frames; the start and the end.
    assert len(frames) == 1 + 16 + 1
    assert durations == [500] + [100] * 16 + [3000]
    unknown_tones = {tuple(tone) for tone in UNKNOWN_TONES.tolist()}
    assert pixel(frames[0], 4, 0) in unknown_tones  # as the canvas shows unknown pixels
    order = np.argwhere(~start[1])  # raster order
    for k, frame in enumerate(frames[1:-1], start=1):
        shown = {tuple(cell) for cell in order[:2 * k].tolist()}
        for row, col in order.tolist():
            is_unknown = pixel(frame, row, col) in unknown_tones
            assert is_unknown == ((row, col) not in shown), (k, row, col)
    assert np.array_equal(frames[-1], render(*result, levels=2))


def test_a_stopped_completion_exports_what_it_sampled(window, qtbot, tmp_path, monkeypatch):
    erase_bottom(window, rows=8)
    window.options.set_pixels_per_second(20)
    with qtbot.waitSignal(window.runner.finished, timeout=20_000):
        window.complete()
        qtbot.waitUntil(lambda: window.runner.pixels_done >= 5, timeout=10_000)
        window.stop()
    sampled = int(window.canvas.drawing.known.sum())
    export(window, monkeypatch, tmp_path / "stopped.gif", Pace(1.0, 10, 1.0))
    frames, _ = read_gif(tmp_path / "stopped.gif")
    step = -(-sampled // 10)
    assert len(frames) == 2 + -(-sampled // step)
    assert pixel(frames[-1], 7, 7) in {tuple(tone) for tone in UNKNOWN_TONES.tolist()}


def test_a_completion_of_another_model_is_not_exported(window, qtbot, tmp_path, monkeypatch):
    erase_bottom(window)
    with qtbot.waitSignal(window.runner.finished, timeout=20_000):
        window.complete()
    answer(qtbot, "Discard")
    choose_model(window, "gray")
    shown = []
    monkeypatch.setattr(QMessageBox, "information",
                        lambda *args: shown.append(args[2]))
    export(window, monkeypatch, tmp_path / "old.gif")
    assert shown == ["Complete a drawing first."] and not (tmp_path / "old.gif").exists()
