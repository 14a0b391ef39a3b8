"""Does hole-aware completion respect what lies under the hole?

    python -m model.holes --model NAME_OR_PATH --data DIR [--count 300] [--rerank 16]
                          [--hole 14] [--seed 0] [--temperature 1.0] [--json]

For each of the first --count test digits a centred square hole (--hole pixels a side; 14
erases rows and columns 7-20 of a 28 x 28 digit) is completed without a class in three ways:
plain raster completion, and hole-aware completion (model.rerank) keeping the best of --rerank
candidates or resampling one. Each digit's candidates are one batch with seed + k (k the
digit's index); candidate 0 is exactly the plain completion with that seed, so the three
share their random numbers and differ only in the choice. For each way the report gives

- recognised: how often the digit classifier of model.recognise names the completion as the
  original digit;
- evidence: the mean log-likelihood, nats per image, of the known pixels after the first
  unknown one (the rest of the hole's rows and everything below), which the raster order
  hides from the sampler while it fills the hole.

The original digits and the hole left empty (level 0) are scored the same way for context.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from . import recognise
from .base import ImageModel
from .evaluate import UsageError, load_split, positive_int, run_measurement
from .recognise import (
    DigitClassifier,
    load_digit_model,
    load_or_train_classifier,
    non_negative_float,
    predict,
)
from .rerank import choose, score
from .sampling import complete

ROWS = ("original", "empty", "plain", "best", "resample")
ROW_NAMES = {
    "original": "original digit",
    "empty": "hole left empty",
    "plain": "plain raster completion",
    "best": "hole-aware, best of N",
    "resample": "hole-aware, resampled",
}


def central_hole_known(height: int, width: int, size: int) -> np.ndarray:
    """Known-pixel mask with a centred size x size square unknown (rows and columns
    (height - size) // 2 onwards)."""
    if not 1 <= size <= min(height, width):
        raise ValueError(f"A hole of {size} pixels a side does not fit a {height} x {width} "
                         f"image.")
    top, left = (height - size) // 2, (width - size) // 2
    known = np.ones((height, width), bool)
    known[top:top + size, left:left + size] = False
    return known


def measure_holes(pixelcnn: ImageModel, classifier: DigitClassifier, images, labels, *,
                  hole: int = 14, candidates: int = 16, seed: int = 0,
                  temperature: float = 1.0,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """The measurement on (N, 1, H, W) levels and their digits; see the module docstring.

    Returns per row of ROWS the recognition rate and mean evidence log-likelihood, and the
    completions themselves ((N, 1, H, W) uint8 per completion row).
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"Need one label per image and at least one image; got {len(images)} "
                         f"images and {len(labels)} labels.")
    known = central_hole_known(*images.shape[-2:], hole)
    chosen = {row: np.empty_like(images) for row in ROWS}
    evidence = {row: np.empty(len(images)) for row in ROWS}
    seconds = np.empty(len(images))
    for k, image in enumerate(images):
        started = time.perf_counter()
        batch = complete(pixelcnn, image, known, candidates=candidates, seed=seed + k,
                         temperature=temperature, class_label=None).run()
        empty = np.where(known, image, 0).astype(np.uint8)
        # One scoring pass for the candidates and the two context images after them.
        image_loglik, evidence_loglik = score(pixelcnn, np.concatenate(
            [batch, image[None], empty[None]]), known)
        picks = {"plain": 0,
                 "best": choose("best", image_loglik[:candidates],
                                evidence_loglik[:candidates], seed + k),
                 "resample": choose("resample", image_loglik[:candidates],
                                    evidence_loglik[:candidates], seed + k)}
        seconds[k] = time.perf_counter() - started
        for row, index in picks.items():
            chosen[row][k], evidence[row][k] = batch[index], evidence_loglik[index]
        chosen["original"][k], evidence["original"][k] = image, evidence_loglik[candidates]
        chosen["empty"][k], evidence["empty"][k] = empty, evidence_loglik[candidates + 1]
        if progress:
            progress(k + 1, len(images))

    results = {}
    for row in ROWS:
        predictions = predict(classifier, chosen[row])
        results[row] = {"recognised_rate": float((predictions == labels).mean()),
                        "evidence_loglik": float(evidence[row].mean())}
    top, left = (images.shape[-2] - hole) // 2, (images.shape[-1] - hole) // 2
    return {
        "images": len(images),
        "hole": {"size": hole, "rows": [top, top + hole - 1], "cols": [left, left + hole - 1]},
        "candidates": candidates,
        "temperature": float(temperature),
        # The median: the first digit also pays for compiling the sampler's kernels.
        "seconds_per_image": float(np.median(seconds)),
        "results": results,
        "completions": {row: chosen[row] for row in ("plain", "best", "resample")},
    }


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    path, pixelcnn, mode, levels = load_digit_model(args.model)
    cfg = pixelcnn.config
    if args.hole > min(cfg.height, cfg.width):
        raise UsageError(f"A hole of {args.hole} pixels a side does not fit the model's "
                         f"{cfg.height} x {cfg.width} images.")
    images, labels = load_split(args.data, "test", mode, levels, args.count)
    # recognise.CHECKPOINTS_DIR is read at call time, so tests can point it elsewhere.
    classifier, test_accuracy = load_or_train_classifier(
        args.data, mode, levels, cache_dir=recognise.CHECKPOINTS_DIR, log=log)

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            log(f"completed {done}/{total}")

    result = measure_holes(pixelcnn, classifier, images.numpy(), labels.numpy(),
                           hole=args.hole, candidates=args.rerank, seed=args.seed,
                           temperature=args.temperature, progress=progress)
    del result["completions"]
    return {"model": str(path), **result, "classifier_test_accuracy": test_accuracy}


def table(result: dict) -> str:
    hole = result["hole"]
    lines = [
        f"{result['model']}, {result['images']} test digits, a centred {hole['size']}x"
        f"{hole['size']} hole (rows and columns {hole['rows'][0]}-{hole['rows'][1]}) completed "
        f"without a class at temperature {result['temperature']:g}; hole-aware completion "
        f"from {result['candidates']} candidates, {result['seconds_per_image']:.2f} s per digit "
        f"(median):",
        "",
        "| completion | recognised as the original digit | log p(known pixels after the "
        "hole), nats |",
        "| --- | --- | --- |",
    ]
    for row in ROWS:
        r = result["results"][row]
        lines.append(f"| {ROW_NAMES[row]} | {r['recognised_rate']:.1%} | "
                     f"{r['evidence_loglik']:.2f} |")
    lines.append(f"\nclassifier test accuracy (all test digits): "
                 f"{result['classifier_test_accuracy']:.2%}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.holes",
        description="Plain and hole-aware completion of a central hole in test digits: how "
                    "often each is recognised as the original digit, and how likely the "
                    "known pixels after the hole are under each.")
    parser.add_argument("--model", required=True,
                        help="a name in resources/models, or the path of a model's files")
    parser.add_argument("--data", required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--count", type=positive_int, default=300,
                        help="use the first N test images (default 300)")
    parser.add_argument("--rerank", type=positive_int, default=16, metavar="N",
                        help="candidates per digit for hole-aware completion (default 16)")
    parser.add_argument("--hole", type=positive_int, default=14,
                        help="side of the centred square hole in pixels (default 14)")
    parser.add_argument("--seed", type=int, default=0,
                        help="digit k is completed with seed + k (default 0)")
    parser.add_argument("--temperature", type=non_negative_float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_measurement(build_parser().parse_args(argv), measure, table)


if __name__ == "__main__":
    sys.exit(main())
