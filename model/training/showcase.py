"""Draw a model's samples and completions into one PNG, to look at before shipping it.

    pixelcnn-studio showcase --model NAME_OR_PATH --data DIR --output docs/NAME.png
    pixelcnn-studio showcase --model emoji-color --output docs/emoji-color.png

Rows: unconditional samples; for class-conditional models one row of samples per class;
then held-out test images (MNIST digits, or emoji for a model trained on them) as
(original | erased | completion) triples, first with the bottom half erased, then with a
central square hole of half the side. Erased pixels show as a grey checkerboard.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw

from ..images import bottom_half_known, enlarge, levels_to_rgb
from ..io import ModelFileError, load_model, read_card
from ..registry import resolve_model
from ..sampling import complete
from .data import DatasetError, load_mnist, quantize
from .emoji import load_emoji
from .evaluate import UsageError, card_dataset
from .holes import central_hole_known

COLUMNS = 10
TILE = 84  # pixels a side of each image, at least: 28 x 28 digits at 3x, 24 x 24 emoji at 4x
GAP = 4
LABEL_WIDTH = 90
TEST_IMAGES = 15  # five rows of three triples per kind of completion
CHECKER = np.array([[150, 150, 150], [105, 105, 105]], np.uint8)  # as the app's canvas


def sample_row(model, class_label, seed) -> np.ndarray:
    cfg = model.config
    blank = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    unknown = np.zeros((cfg.height, cfg.width), bool)
    return complete(model, blank, unknown, candidates=COLUMNS, seed=seed,
                    class_label=class_label).run()


def completions(model, images: np.ndarray, known: np.ndarray, seed: int) -> list[tuple]:
    """(original, erased, completed) for each image: erased pixels are level 0 and None
    marks them for `tile`; each image has its own seed."""
    triples = []
    for k, image in enumerate(images):
        completed = complete(model, image, known, seed=seed + k).run()[0]
        triples.append(((image, None), (np.where(known[None], image, 0), known),
                        (completed, None)))
    return triples


def tile(image: np.ndarray, levels: int, known: np.ndarray | None, scale: int) -> np.ndarray:
    """(C, H, W) levels as enlarged RGB, unknown pixels as a checkerboard."""
    rgb = levels_to_rgb(image, levels).copy()
    if known is not None:
        rows, cols = np.indices(known.shape)
        checker = CHECKER[(rows + cols) % 2]
        rgb[~known] = checker[~known]
    return enlarge(rgb, scale)


def render(rows: list[list], levels: int, labels: list[str], size: int) -> Image.Image:
    """Rows of (image, known-or-None) pairs, None for an empty place, with a label each."""
    scale = max(1, -(-TILE // size))
    side = size * scale
    width = LABEL_WIDTH + COLUMNS * (side + GAP)
    canvas = Image.new("RGB", (width, len(rows) * (side + GAP)), (64, 64, 64))
    draw = ImageDraw.Draw(canvas)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        top = r * (side + GAP)
        draw.text((4, top + side // 2 - 6), label, fill=(255, 255, 255))
        for c, place in enumerate(row):
            if place is not None:
                picture = Image.fromarray(tile(place[0], levels, place[1], scale))
                canvas.paste(picture, (LABEL_WIDTH + c * (side + GAP), top))
    return canvas


def test_images(card: dict, path, data) -> np.ndarray:
    """The first TEST_IMAGES test images as (N, C, H, W) levels, prepared as in training."""
    cfg = card["config"]
    if card_dataset(card, path) == "emoji":
        # Spread over the split: in codepoint order it begins with digits and symbols.
        images = load_emoji("test", cfg.height, cfg.levels, data)[0]
        return images[np.linspace(0, len(images) - 1, min(TEST_IMAGES, len(images))).astype(int)]
    if data is None:
        raise UsageError(f"{path} is an MNIST model: --data DIR, the folder of the MNIST "
                         "files, is needed.")
    images, _ = load_mnist(data, "test")
    return quantize(images[:TEST_IMAGES], card["data_mode"], cfg.levels, split="test")[:, None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixelcnn-studio showcase", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="MNIST folder (test digits); for an emoji model, where "
                                       "the renders are cached (default ~/.cache/pixelcnn-studio)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    path = resolve_model(args.model)
    try:
        model, card = load_model(path), read_card(path)
        images = test_images(card, path, args.data)
    except (ModelFileError, DatasetError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cfg = model.config
    sample_rows = 2 if cfg.num_classes == 0 else 1
    rows = [[(image, None) for image in sample_row(model, None, args.seed + 100 * n)]
            for n in range(sample_rows)]
    labels = ["samples"] * sample_rows if cfg.num_classes == 0 else ["no class"]
    for label in range(cfg.num_classes):
        rows.append([(image, None) for image in sample_row(model, label, args.seed + 1 + label)])
        labels.append(f"class {label}")
    for name, known in (("bottom half", bottom_half_known(cfg.height, cfg.width)),
                        ("central hole", central_hole_known(cfg.height, cfg.width,
                                                            cfg.height // 2))):
        triples = completions(model, images, known, args.seed)
        for start in range(0, len(triples), 3):
            row = [place for triple in triples[start:start + 3] for place in triple]
            rows.append(row + [None] * (COLUMNS - len(row)))
            labels.append(f"{name}:\norig | erased\n| done")
    render(rows, cfg.levels, labels, cfg.height).save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
