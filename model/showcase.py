"""Draw a model's samples and completions into one PNG, to look at before shipping it.

    python -m model.showcase --model NAME_OR_PATH --data DIR --output docs/NAME.png

Rows: unconditional samples; one row of class-conditional samples per class (conditional
models); then test digits as (original | bottom half erased | completion) triples.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw

from .data import dequantize, load_mnist, quantize
from .io import load_model, read_card
from .registry import resolve_model
from .sampling import complete

COLUMNS = 10
SCALE = 3
GAP = 4


def sample_row(model, class_label, seed) -> np.ndarray:
    cfg = model.config
    blank = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    unknown = np.zeros((cfg.height, cfg.width), bool)
    return complete(model, blank, unknown, candidates=COLUMNS, seed=seed,
                    class_label=class_label).run()


def bottom_half_completions(model, images: np.ndarray, seed: int) -> list[np.ndarray]:
    cfg = model.config
    known = np.ones((cfg.height, cfg.width), bool)
    known[cfg.height // 2:] = False
    triples = []
    for k, image in enumerate(images):
        erased = np.where(known[None], image, 0).astype(np.uint8)
        completed = complete(model, image, known, seed=seed + k).run()[0]
        triples.append((image, erased, completed))
    return triples


def render(rows: list[list[np.ndarray]], levels: int, labels: list[str]) -> Image.Image:
    side = 28 * SCALE
    label_width = 90
    width = label_width + COLUMNS * (side + GAP)
    height = len(rows) * (side + GAP)
    canvas = Image.new("L", (width, height), 64)
    draw = ImageDraw.Draw(canvas)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        top = r * (side + GAP)
        draw.text((4, top + side // 2 - 6), label, fill=255)
        for c, image in enumerate(row):
            gray = dequantize(image[0], levels)
            tile = Image.fromarray(gray).resize((side, side), Image.NEAREST)
            canvas.paste(tile, (label_width + c * (side + GAP), top))
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.showcase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="MNIST folder (test digits)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    path = resolve_model(args.model)
    model, card = load_model(path), read_card(path)
    cfg = model.config
    rows, labels = [list(sample_row(model, None, args.seed))], ["no class"]
    for label in range(cfg.num_classes):
        rows.append(list(sample_row(model, label, args.seed + 1 + label)))
        labels.append(f"class {label}")
    images, _ = load_mnist(args.data, "test")
    test = quantize(images[:15], card["data_mode"], cfg.levels, split="test")[:, None]
    triples = bottom_half_completions(model, test, args.seed)
    for start in range(0, len(triples), 3):
        row = [image for triple in triples[start:start + 3] for image in triple]
        rows.append(row + [np.zeros_like(row[0])] * (COLUMNS - len(row)))
        labels.append("test: orig |\nerased | done")
    render(rows, cfg.levels, labels).save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
