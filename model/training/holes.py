"""Does hole-aware completion respect what lies under the hole?

    pixelcnn-studio holes --model NAME_OR_PATH --data DIR [--count 300] [--rerank 16]
                          [--hole 10] [--seed 0] [--temperature 1.0] [--json]

For each of the first --count test digits a centred square hole (--hole pixels a side; 10
erases rows and columns 9-18 of a 28 x 28 digit) is completed in three ways: plain raster
completion, and hole-aware completion (model.rerank) keeping the best of --rerank candidates
or resampling one; and, for a class-conditional model, with three kinds of class: none, the
digit's true class, and "auto" (model.posterior: the most likely class for the plain
completion, a class drawn from the posterior per candidate for hole-aware completion). Each
digit's candidates are one batch with seed + k (k the digit's index); without a class or
with the true one, candidate 0 is exactly the plain completion with that seed, so the three
ways share their random numbers and differ only in the choice. For each the report gives

- recognised: how often the digit classifier of model.training.recognise names the completion as the
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

from ..base import ImageModel
from ..rerank import choose, score
from ..sampling import complete
from .evaluate import UsageError, load_split, positive_int, run_measurement
from .recognise import (
    DigitClassifier,
    add_digit_test_arguments,
    class_for,
    class_modes,
    load_digit_model,
    load_or_train_classifier,
    predict,
)

WAYS = ("plain", "best", "resample")
WAY_NAMES = {
    "plain": "plain raster completion",
    "best": "hole-aware, best of N",
    "resample": "hole-aware, resampled",
}
CONTEXT_NAMES = {"original": "original digit", "empty": "hole left empty"}
# The classes completions are conditioned on: none, the digit's own, or "auto" (the most
# likely class for a plain completion, classes drawn from the posterior for hole-aware ones).
CLASS_MODES = ("none", "true", "auto")
CLASS_MODE_NAMES = {"none": "no class", "true": "true class", "auto": "auto class"}


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
                  hole: int = 10, candidates: int = 16, seed: int = 0,
                  temperature: float = 1.0, modes=CLASS_MODES,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """The measurement on (N, 1, H, W) levels and their digits; see the module docstring.

    Returns, per class mode (only "none" for a model without classes) and per way of WAYS,
    the recognition rate and the mean evidence log-likelihood (scored under the class each
    completion was sampled with), the same for the original digits and the empty hole
    (without a class), and the completions themselves ((N, 1, H, W) uint8).
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"Need one label per image and at least one image; got {len(images)} "
                         f"images and {len(labels)} labels.")
    modes = class_modes(pixelcnn, modes)
    known = central_hole_known(*images.shape[-2:], hole)
    ways = [(mode, way) for mode in modes for way in WAYS]
    chosen = {key: np.empty_like(images) for key in [*ways, "original", "empty"]}
    evidence = {key: np.empty(len(images)) for key in chosen}
    seconds = np.empty(len(images))
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        started = time.perf_counter()
        empty = np.where(known, image, 0).astype(np.uint8)
        _, context = score(pixelcnn, np.stack([image, empty]), known)
        chosen["original"][k], evidence["original"][k] = image, context[0]
        chosen["empty"][k], evidence["empty"][k] = empty, context[1]
        for mode in modes:
            class_label = class_for("drawn" if mode == "auto" else mode, label)
            batch = complete(pixelcnn, image, known, candidates=candidates, seed=seed + k,
                             temperature=temperature, class_label=class_label)
            batch.run()
            images_k, classes = batch.images, batch.task.class_labels
            if mode == "auto":  # a single completion takes the most likely class
                plain = complete(pixelcnn, image, known, seed=seed + k,
                                 temperature=temperature, class_label="likely")
                images_k = np.concatenate([plain.run(), images_k])
                classes = plain.task.class_labels + classes
            image_loglik, evidence_loglik = score(pixelcnn, images_k, known, classes)
            offset = len(images_k) - candidates  # candidate 0 is the plain completion
            picks = {"plain": 0}
            for way in ("best", "resample"):
                picks[way] = offset + choose(way, image_loglik[offset:],
                                             evidence_loglik[offset:], seed + k)
            for way, index in picks.items():
                chosen[mode, way][k], evidence[mode, way][k] = images_k[index], \
                    evidence_loglik[index]
        seconds[k] = time.perf_counter() - started
        if progress:
            progress(k + 1, len(images))

    def rates(key) -> dict:
        return {"recognised_rate": float((predict(classifier, chosen[key]) == labels).mean()),
                "evidence_loglik": float(evidence[key].mean())}

    top, left = (images.shape[-2] - hole) // 2, (images.shape[-1] - hole) // 2
    return {
        "images": len(images),
        "hole": {"size": hole, "rows": [top, top + hole - 1], "cols": [left, left + hole - 1]},
        "candidates": candidates,
        "temperature": float(temperature),
        # The median: the first digit also pays for compiling the sampler's kernels.
        "seconds_per_image": float(np.median(seconds)),
        "context": {key: rates(key) for key in CONTEXT_NAMES},
        "results": {mode: {way: rates((mode, way)) for way in WAYS} for mode in modes},
        "completions": {f"{mode}/{way}": chosen[mode, way] for mode, way in ways},
    }


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    path, pixelcnn, mode, levels = load_digit_model(args.model)
    cfg = pixelcnn.config
    if args.hole > min(cfg.height, cfg.width):
        raise UsageError(f"A hole of {args.hole} pixels a side does not fit the model's "
                         f"{cfg.height} x {cfg.width} images.")
    images, labels = load_split(args.data, "test", mode, levels, args.count)
    classifier, test_accuracy = load_or_train_classifier(args.data, mode, levels, log=log)

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
    modes = list(result["results"])
    lines = [
        f"{result['model']}, {result['images']} test digits, a centred {hole['size']}x"
        f"{hole['size']} hole (rows and columns {hole['rows'][0]}-{hole['rows'][1]}) completed "
        f"at temperature {result['temperature']:g}; hole-aware completion from "
        f"{result['candidates']} candidates, {result['seconds_per_image']:.2f} s per digit "
        f"for every row below (median). Recognised as the original digit, and in brackets "
        f"log p(known pixels after the hole) in nats:",
        "",
        "| completion | " + " | ".join(CLASS_MODE_NAMES[mode] for mode in modes) + " |",
        "| --- |" + " --- |" * len(modes),
    ]
    for way in WAYS:
        cells = [result["results"][mode][way] for mode in modes]
        lines.append(f"| {WAY_NAMES[way]} | " + " | ".join(
            f"{c['recognised_rate']:.1%} ({c['evidence_loglik']:.2f})" for c in cells) + " |")
    for key, name in CONTEXT_NAMES.items():
        c = result["context"][key]
        lines.append(f"| {name} | {c['recognised_rate']:.1%} ({c['evidence_loglik']:.2f}), "
                     "without a class |" + " |" * (len(modes) - 1))
    lines.append(f"\nclassifier test accuracy (all test digits): "
                 f"{result['classifier_test_accuracy']:.2%}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio holes",
        description="Plain and hole-aware completion of a central hole in test digits: how "
                    "often each is recognised as the original digit, and how likely the "
                    "known pixels after the hole are under each.")
    add_digit_test_arguments(parser, count=300)
    parser.add_argument("--rerank", type=positive_int, default=16, metavar="N",
                        help="candidates per digit for hole-aware completion (default 16)")
    parser.add_argument("--hole", type=positive_int, default=10,
                        help="side of the centred square hole in pixels (default 10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_measurement(build_parser().parse_args(argv), measure, table)


if __name__ == "__main__":
    sys.exit(main())
