"""The picture being edited, at model resolution, and its undo step.

Kept free of widgets so that the canvas, the completion runner and the file dialogs can all
work on the same `Drawing` and tests can check it without painting anything.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtGui import QUndoCommand

from model.images import brightness, display_values, quantize

Snapshot = tuple[np.ndarray, np.ndarray]  # (values, known), both copies


def convert_snapshot(snapshot: Snapshot, from_levels: int, channels: int,
                     levels: int) -> Snapshot:
    """A picture at other levels or channels: each pixel as it is shown now, quantized to
    `levels` as an opened picture is (grey to colour repeats the grey, colour to grey takes
    the brightness); unknown pixels stay unknown (and 0)."""
    values, known = snapshot
    shown = display_values(from_levels)[values].transpose(1, 2, 0) / 255
    if channels == 1:
        shown = brightness(shown)[..., None]
    elif shown.shape[2] == 1:
        shown = np.repeat(shown, 3, axis=2)
    converted = quantize(shown, levels).transpose(2, 0, 1)
    converted[:, ~known] = 0
    return np.ascontiguousarray(converted), known.copy()


class Drawing:
    """Pixel values (C, H, W) uint8 in 0..levels-1 and a known mask (H, W).

    Known pixels are the ones the user drew or loaded; unknown ones are what the model
    completes. A new drawing is an empty canvas: every pixel known and 0 (background; ink is
    bright, as in MNIST), so the user draws ink and erases what should be completed.
    """

    def __init__(self, channels: int, height: int, width: int, levels: int):
        if channels not in (1, 3):
            raise ValueError(f"A drawing has 1 or 3 channels, not {channels}.")
        if height < 1 or width < 1:
            raise ValueError(f"A drawing needs at least one pixel, not {height}x{width}.")
        if not 2 <= levels <= 256:
            raise ValueError(f"A drawing has 2 to 256 levels per channel, not {levels}.")
        self.levels = levels
        self.values = np.zeros((channels, height, width), np.uint8)
        self.known = np.ones((height, width), bool)

    @classmethod
    def from_arrays(cls, values, known, levels: int) -> Drawing:
        """A drawing holding copies of the given values ((C, H, W) or (H, W)) and mask."""
        values = np.asarray(values)
        if values.ndim == 2:
            values = values[None]
        if values.ndim != 3:
            raise ValueError(f"Values must be (C, H, W) or (H, W), not shape {values.shape}.")
        drawing = cls(values.shape[0], values.shape[1], values.shape[2], levels)
        drawing.restore((values, known))
        return drawing

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    @property
    def height(self) -> int:
        return self.values.shape[1]

    @property
    def width(self) -> int:
        return self.values.shape[2]

    def copy(self) -> Drawing:
        return Drawing.from_arrays(self.values, self.known, self.levels)

    def converted(self, channels: int, height: int, width: int, levels: int) -> Drawing | None:
        """This picture for another model (see `convert_snapshot`); None for another size: a
        few pixels resampled to another grid keep nothing of the drawing worth keeping."""
        if (height, width) != (self.height, self.width):
            return None
        values, known = convert_snapshot(self.snapshot(), self.levels, channels, levels)
        return Drawing.from_arrays(values, known, levels)

    def snapshot(self) -> Snapshot:
        return self.values.copy(), self.known.copy()

    def restore(self, snapshot: Snapshot) -> None:
        """Copy a snapshot back in place, so anyone holding `values` or `known` sees it."""
        values, known = (np.asarray(a) for a in snapshot)
        if values.shape != self.values.shape or known.shape != self.known.shape:
            raise ValueError(
                f"A snapshot of shape {values.shape} / {known.shape} does not fit a drawing of "
                f"shape {self.values.shape} / {self.known.shape}."
            )
        if values.size and (values.min() < 0 or values.max() >= self.levels):
            raise ValueError(f"Pixel values must lie within 0..{self.levels - 1}.")
        np.copyto(self.values, values, casting="unsafe")
        np.copyto(self.known, known.astype(bool, copy=False))

    def same_as(self, snapshot: Snapshot) -> bool:
        values, known = snapshot
        return np.array_equal(self.values, values) and np.array_equal(self.known, known)

    def unknown_count(self) -> int:
        return int(np.count_nonzero(~self.known))

    def known_for_completion(self) -> np.ndarray:
        """(H, W) bool: the known mask Complete samples from. The pixels erased, when any
        are; with none erased, every row below the lowest one with ink becomes unknown (so
        the first stroke completes), and on an empty canvas every pixel (a new sample)."""
        if not self.known.all():
            return self.known.copy()
        inked_rows = np.flatnonzero(self.values.any(axis=(0, 2)))
        known = np.zeros_like(self.known)
        if len(inked_rows):
            known[:inked_rows[-1] + 1] = True
        return known

    def is_blank(self) -> bool:
        """True for an empty canvas, as new or just cleared: every pixel known and 0."""
        return bool(self.known.all()) and not self.values.any()


class DrawingEdit(QUndoCommand):
    """One undo step: the whole drawing before and after (the images are tiny).

    It is made after the change has been applied, so the first redo(), which
    QUndoStack.push calls, restores the state the drawing is already in: nothing happens twice.
    """

    def __init__(self, drawing: Drawing, before: Snapshot, after: Snapshot, text: str,
                 on_change: Callable[[], None] | None = None):
        super().__init__(text)
        self._drawing = drawing
        self._before = before
        self._after = after
        self._on_change = on_change

    def move_to(self, drawing: Drawing, convert: Callable[[Snapshot], Snapshot]) -> None:
        """Make this a step of `drawing`, the same picture at another model's levels or
        channels, its before and after converted alike: the history outlives the change."""
        self._drawing = drawing
        self._before, self._after = convert(self._before), convert(self._after)

    def redo(self) -> None:
        self._apply(self._after)

    def undo(self) -> None:
        self._apply(self._before)

    def _apply(self, snapshot: Snapshot) -> None:
        self._drawing.restore(snapshot)
        if self._on_change is not None:
            self._on_change()
