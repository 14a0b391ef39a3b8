"""A completion as an animated GIF: the pixels appear in the order they were sampled, a few
per frame at the pace chosen here, whatever speed the completion itself ran at; unknown
pixels look as they do on the canvas, and the finished picture is held at the end."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from model.files import write_atomically

from .canvas import CURSOR_COLOUR
from .document import Snapshot
from .pixel_images import shown_rgb

SCALE = 8  # screen pixels per picture pixel: a 28x28 digit becomes 224x224
CURSOR_RGB = (CURSOR_COLOUR.red(), CURSOR_COLOUR.green(), CURSOR_COLOUR.blue())


@dataclass(frozen=True)
class Pace:
    """How the animation runs: the sampling spread over `seconds` at `frames_per_second`,
    the starting picture shown for `start_seconds` and the finished one held for
    `hold_seconds`."""

    seconds: float = 4.0
    frames_per_second: int = 25
    hold_seconds: float = 2.0
    start_seconds: float = 0.5

    @property
    def frame_ms(self) -> int:
        # GIF counts in hundredths of a second.
        return max(20, 10 * round(100 / self.frames_per_second))

    def pixels_per_frame(self, pixels: int) -> int:
        frames = max(1, round(self.seconds * 1000 / self.frame_ms))
        return max(1, math.ceil(pixels / frames))


def sampling_order(start_known: np.ndarray, final_known: np.ndarray) -> np.ndarray:
    """(n, 2) rows and columns of the pixels the completion sampled, in the order it sampled
    them: raster order over those unknown at the start and known at the end."""
    sampled = ~np.asarray(start_known, bool) & np.asarray(final_known, bool)
    return np.argwhere(sampled)  # argwhere walks rows, then columns: raster order


def render(values: np.ndarray, known: np.ndarray, levels: int,
           cursor: tuple[int, int] | None = None) -> np.ndarray:
    """(H*SCALE, W*SCALE, 3) uint8: the picture as the canvas shows it, the pixel just
    sampled outlined as the canvas outlines it."""
    rgb = shown_rgb(values, known, levels)  # two sub-squares per pixel each way
    rgb = rgb.repeat(SCALE // 2, axis=0).repeat(SCALE // 2, axis=1)
    if cursor is not None:
        top, left = cursor[0] * SCALE, cursor[1] * SCALE
        square = rgb[top:top + SCALE, left:left + SCALE]
        square[[0, -1], :] = CURSOR_RGB
        square[:, [0, -1]] = CURSOR_RGB
    return rgb


def animation_frames(start: Snapshot, final: Snapshot, levels: int,
                     pace: Pace = Pace()) -> tuple[list[np.ndarray], list[int]]:
    """The frames (RGB) and their durations in milliseconds: the start, then the sampled
    pixels appearing in sampling order a few per frame, then the finished picture held."""
    values, known = (np.array(a) for a in start)
    final_values, final_known = final
    order = sampling_order(known, final_known)
    frames, durations = [render(values, known, levels)], [round(1000 * pace.start_seconds)]
    step = pace.pixels_per_frame(len(order))
    for first in range(0, len(order), step):
        rows, cols = order[first:first + step].T
        values[:, rows, cols] = final_values[:, rows, cols]
        known[rows, cols] = True
        frames.append(render(values, known, levels, cursor=(rows[-1], cols[-1])))
        durations.append(pace.frame_ms)
    frames.append(render(final_values, final_known, levels))
    durations.append(max(pace.frame_ms, round(1000 * pace.hold_seconds)))
    return frames, durations


def write_gif(path, start: Snapshot, final: Snapshot, levels: int, pace: Pace = Pace()) -> int:
    """Write the completion from `start` to `final` as a looping GIF, atomically; returns
    the number of frames."""
    frames, durations = animation_frames(start, final, levels, pace)
    pictures = [Image.fromarray(frame) for frame in frames]
    write_atomically(path, lambda temporary: pictures[0].save(
        temporary, format="GIF", save_all=True, append_images=pictures[1:],
        duration=durations, loop=0))
    return len(frames)


class PaceDialog(QDialog):
    """Asks how the exported animation should run."""

    def __init__(self, pixels: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export completion as GIF")
        self.pixels = pixels
        form = QFormLayout(self)
        self.seconds_box = QDoubleSpinBox()
        self.seconds_box.setRange(0.5, 60.0)
        self.seconds_box.setSingleStep(0.5)
        self.seconds_box.setSuffix(" s")
        self.seconds_box.setValue(Pace.seconds)
        self.seconds_box.setToolTip("How long the pixels take to appear")
        form.addRow("Sampling over", self.seconds_box)
        self.fps_box = QSpinBox()
        self.fps_box.setRange(5, 50)
        self.fps_box.setValue(Pace.frames_per_second)
        form.addRow("Frames per second", self.fps_box)
        self.hold_box = QDoubleSpinBox()
        self.hold_box.setRange(0.0, 30.0)
        self.hold_box.setSingleStep(0.5)
        self.hold_box.setSuffix(" s")
        self.hold_box.setValue(Pace.hold_seconds)
        form.addRow("Hold the result", self.hold_box)
        self.summary = QLabel()
        form.addRow(self.summary)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        for box in (self.seconds_box, self.fps_box, self.hold_box):
            box.valueChanged.connect(self._summarise)
        self._summarise()

    def pace(self) -> Pace:
        return Pace(self.seconds_box.value(), self.fps_box.value(), self.hold_box.value())

    def _summarise(self) -> None:
        pace = self.pace()
        self.summary.setText(f"{self.pixels} pixels, {pace.pixels_per_frame(self.pixels)} "
                             f"per frame")

    @classmethod
    def ask(cls, pixels: int, parent: QWidget | None = None) -> Pace | None:
        dialog = cls(pixels, parent)
        return dialog.pace() if dialog.exec() == QDialog.DialogCode.Accepted else None
