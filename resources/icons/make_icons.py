"""Draw the app icon: the sample 3 as big square pixels, its top half as drawn (white) and
its bottom half as the model would complete it (amber), on a dark rounded tile.

Run once from the repository root; the outputs are committed beside this script:
    .venv/bin/python resources/icons/make_icons.py
pixelcnn-studio.png (256x256: the window icon and the Linux .desktop icon),
pixelcnn-studio.ico (Windows) and pixelcnn-studio.icns (macOS).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "samples" / "digit-3.png"
SIZE = 256
BACKGROUND = (28, 33, 45, 255)
KNOWN_INK = (240, 240, 240, 255)
COMPLETED_INK = (255, 176, 32, 255)


def draw_icon() -> Image.Image:
    ink = np.asarray(Image.open(SAMPLE).convert("L")) >= 128
    rows, cols = np.nonzero(ink)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    cell = (SIZE * 3 // 4) // max(h, w)  # the digit fills three quarters of the tile
    top, left = (SIZE - h * cell) // 2, (SIZE - w * cell) // 2

    icon = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    pen = ImageDraw.Draw(icon)
    pen.rounded_rectangle((0, 0, SIZE - 1, SIZE - 1), radius=SIZE // 6, fill=BACKGROUND)
    for r, c in zip(*np.nonzero(ink), strict=True):
        colour = KNOWN_INK if r < h // 2 else COMPLETED_INK
        x, y = left + c * cell, top + r * cell
        pen.rectangle((x + 1, y + 1, x + cell - 2, y + cell - 2), fill=colour)
    return icon


def main() -> None:
    icon = draw_icon()
    icon.save(HERE / "pixelcnn-studio.png", optimize=True)
    icon.save(HERE / "pixelcnn-studio.ico",
              sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    icon.save(HERE / "pixelcnn-studio.icns")


if __name__ == "__main__":
    main()
