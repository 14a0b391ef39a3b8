"""Which cells a stroke touches, and setting them: the canvas's tools in cell coordinates.

Cells are (row, col) pairs and may lie off the image (a stroke can run over its edge);
whatever changes the picture is clipped to it.
"""

from __future__ import annotations

from .document import Drawing

Cell = tuple[int, int]


def line_cells(start: Cell, end: Cell) -> list[Cell]:
    """The cells of a Bresenham line from start to end (row, col), both included."""
    (row, col), (end_row, end_col) = start, end
    d_col, d_row = abs(end_col - col), -abs(end_row - row)
    step_col = 1 if col < end_col else -1
    step_row = 1 if row < end_row else -1
    error = d_col + d_row
    cells = [(row, col)]
    while (row, col) != (end_row, end_col):
        doubled = 2 * error
        if doubled >= d_row:
            error += d_row
            col += step_col
        if doubled <= d_col:
            error += d_col
            row += step_row
        cells.append((row, col))
    return cells


def on_image(cell: Cell | None, shape: tuple[int, int]) -> bool:
    """Whether a cell lies on an image of `shape` (H, W)."""
    return cell is not None and 0 <= cell[0] < shape[0] and 0 <= cell[1] < shape[1]


def brush_corners(row: int, col: int, size: int) -> tuple[Cell, Cell]:
    """A square brush of `size` centred on the cell (even sizes reach one further
    down-right): its first and last cells."""
    back = (size - 1) // 2
    forward = size - 1 - back
    return (row - back, col - back), (row + forward, col + forward)


def clipped_rect(a: Cell, b: Cell, shape: tuple[int, int]) -> tuple[Cell | None, Cell | None]:
    """The corners of the cell rectangle spanned by a and b, clipped to an image of `shape`
    (H, W), or (None, None) when none of it lies on the image."""
    rows, cols = shape
    top, bottom = max(min(a[0], b[0]), 0), min(max(a[0], b[0]), rows - 1)
    left, right = max(min(a[1], b[1]), 0), min(max(a[1], b[1]), cols - 1)
    if top > bottom or left > right:
        return None, None
    return (top, left), (bottom, right)


def set_cells(drawing: Drawing, first: Cell, last: Cell, known: bool, value) -> bool:
    """Set the rectangle from `first` to `last`, clipped to the drawing, to `value` (a level,
    or (C, 1, 1) levels, one per channel); True if any pixel changed."""
    first, last = clipped_rect(first, last, drawing.known.shape)
    if first is None:
        return False
    rows = slice(first[0], last[0] + 1)
    cols = slice(first[1], last[1] + 1)
    values, known_mask = drawing.values[:, rows, cols], drawing.known[rows, cols]
    if (values == value).all() and (known_mask == known).all():
        return False
    values[...] = value
    known_mask[...] = known
    return True
