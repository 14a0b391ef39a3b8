"""Draw smiley.png, the colour models' sample picture (the demo's and the self-test's).

A yellow face with an orange rim, brown eyes and a smile, on black like the emoji the
colour model was trained on, drawn with Pillow's shapes at 8x and scaled down to 24x24 (the
emoji model's size): made here, not rendered from the emoji font or any dataset.

Run once from the repository root; the output is committed beside this script:
    .venv/bin/python resources/samples/make_smiley.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

OUTPUT = Path(__file__).resolve().parent / "smiley.png"
SIZE = 24
SCALE = 8  # drawn this many times larger, then scaled down: smooth edges
FACE, RIM, FEATURES = (255, 204, 51), (200, 120, 20), (90, 50, 20)


def draw_smiley() -> Image.Image:
    s = SIZE * SCALE
    picture = Image.new("RGB", (s, s), (0, 0, 0))
    pen = ImageDraw.Draw(picture)
    margin = s // 12
    pen.ellipse((margin, margin, s - margin, s - margin), fill=FACE, outline=RIM,
                width=s // 48)
    eye_width, eye_height = s / 10, s / 6
    for centre in (0.36 * s, 0.64 * s):
        pen.ellipse((centre - eye_width / 2, 0.30 * s, centre + eye_width / 2,
                     0.30 * s + eye_height), fill=FEATURES)
    pen.arc((0.25 * s, 0.35 * s, 0.75 * s, 0.78 * s), 20, 160, fill=FEATURES, width=s // 24)
    return picture.resize((SIZE, SIZE), Image.LANCZOS)


if __name__ == "__main__":
    draw_smiley().save(OUTPUT, optimize=True)
    print(OUTPUT)
