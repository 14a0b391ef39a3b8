"""Are bottom-half completions recognisable as the digit they came from?

    pixelcnn-studio recognise --model NAME_OR_PATH --data DIR [--count 500] [--seed 0]
                              [--temperature 1.0] [--json]

A small CNN, trained once on MNIST prepared exactly as the PixelCNN saw it (same data mode
and levels), judges the completions: for each of the first --count test digits the bottom
half is erased, the PixelCNN completes it, and the classifier names the result. The rate of
completions named as the original digit is the measure, for each way of choosing the class
a class-conditional model completes with (CLASS_MODES: none, the true one, or "auto" from
the model's own posterior, most likely or drawn). The classifier's accuracy on the originals
(its ceiling) and on the top halves alone (what the known pixels give away by themselves),
and how often the model's posterior names the digit, put it in context.

The classifier is cached in the user's cache folder (~/.cache/pixelcnn-studio/classifiers/
classifier-<mode>-<levels>.safetensors, or under $XDG_CACHE_HOME), never in the source tree,
with a JSON sidecar (its test accuracy and how it was trained); it is loaded with
safetensors only, never with pickle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..base import ImageModel
from ..files import write_atomically, write_text_atomically
from ..images import bottom_half_known
from ..io import ModelFileError, load_model, read_card
from ..posterior import class_posterior
from ..sampling import complete
from .data import IMAGE_SIZE, levels_for_mode
from .data import cache_dir as user_cache_dir
from .evaluate import card_data_mode, load_split, positive_int, resolve_model_path, run_measurement

NUM_DIGITS = 10
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
EVAL_BATCH_SIZE = 1000


class DigitClassifier(nn.Module):
    """A small CNN for 28x28 digits given as integer levels 0..levels-1 (any integer dtype).

    conv 32 -> pool -> conv 64 -> pool -> dropout -> fc 128 -> fc 10; padding keeps the
    pooled maps at 14 and 7 pixels, so the second conv works on a quarter of the positions
    and two epochs take a couple of minutes on a CPU.
    """

    def __init__(self, levels: int):
        super().__init__()
        if not 2 <= levels <= 256:
            raise ValueError(f"The digit classifier needs 2 to 256 levels, not {levels}.")
        self.levels = int(levels)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, NUM_DIGITS),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) levels -> (N, 10) logits."""
        if images.dim() != 4 or images.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"The digit classifier takes images of shape N x 1 x {IMAGE_SIZE} x "
                f"{IMAGE_SIZE}, not {' x '.join(map(str, images.shape))}."
            )
        x = images.float() / (self.levels - 1)
        return self.head(self.features(x))


def predict(classifier: DigitClassifier, images) -> np.ndarray:
    """Predicted digits (int64, N) for (N, 1, 28, 28) levels, in eval mode, in batches."""
    images = torch.as_tensor(np.asarray(images))
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.inference_mode():
            batches = [classifier(images[start:start + EVAL_BATCH_SIZE]).argmax(1)
                       for start in range(0, len(images), EVAL_BATCH_SIZE)]
    finally:
        classifier.train(was_training)
    return torch.cat(batches).numpy() if batches else np.zeros(0, np.int64)


def accuracy(classifier: DigitClassifier, images, labels) -> float:
    """Fraction of `images` the classifier names as `labels`."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("Cannot measure accuracy on zero images.")
    return float((predict(classifier, images) == labels).mean())


def train_classifier(data_dir, mode: str, levels: int | None = None, epochs: int = 2,
                     seed: int = 0, limit: int | None = None) -> tuple[DigitClassifier, float]:
    """Train on the 'train' split prepared as the PixelCNN saw it; return (model, test accuracy).

    `limit` keeps only the first N training and test images (for quick tests). The same seed
    gives the same model; the caller's global random state is left as it was.
    """
    if epochs < 1:
        raise ValueError(f"Training needs at least one epoch, not {epochs}.")
    levels = levels_for_mode(mode, levels)
    train_images, train_labels = load_split(data_dir, "train", mode, levels, limit)
    test_images, test_labels = load_split(data_dir, "test", mode, levels, limit)

    # fork_rng: seeding here (init, dropout, shuffling) must not reseed the caller's torch.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DigitClassifier(levels)
        optimizer = torch.optim.Adam(classifier.parameters(), lr=LEARNING_RATE)
        loss_function = nn.CrossEntropyLoss()
        classifier.train()
        for _ in range(epochs):
            order = torch.randperm(len(train_images))
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
                optimizer.zero_grad()
                loss = loss_function(classifier(train_images[batch]), train_labels[batch])
                loss.backward()
                optimizer.step()
    classifier.eval()
    return classifier, accuracy(classifier, test_images, test_labels)


def classifier_paths(mode: str, levels: int | None = None,
                     cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(weights, sidecar JSON) of the cached classifier for one data mode and level count."""
    levels = levels_for_mode(mode, levels)
    stem = Path(cache_dir or user_cache_dir() / "classifiers") / f"classifier-{mode}-{levels}"
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_classifier(classifier: DigitClassifier, mode: str, test_accuracy: float,
                    cache_dir: str | os.PathLike | None = None, **details) -> Path:
    """Write weights and sidecar atomically (a crash never leaves half a file)."""
    weights_path, info_path = classifier_paths(mode, classifier.levels, cache_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in classifier.state_dict().items()}
    write_atomically(weights_path, lambda temporary: save_file(state, str(temporary)))
    info = {"mode": mode, "levels": classifier.levels, "test_accuracy": test_accuracy, **details}
    write_text_atomically(info_path, json.dumps(info, indent=2) + "\n")
    return weights_path


def load_classifier(mode: str, levels: int | None = None,
                    cache_dir: str | os.PathLike | None = None
                    ) -> tuple[DigitClassifier, dict]:
    """The cached classifier (eval mode) and its sidecar; ModelFileError if absent or bad."""
    levels = levels_for_mode(mode, levels)
    weights_path, info_path = classifier_paths(mode, levels, cache_dir)
    if not weights_path.is_file() or not info_path.is_file():
        raise ModelFileError(f"{weights_path}: no cached classifier (or its {info_path.name}).")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        state = load_file(str(weights_path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as error:
        raise ModelFileError(f"{weights_path}: cached classifier unreadable ({error}).") from error
    if not isinstance(info, dict) or info.get("mode") != mode or info.get("levels") != levels:
        raise ModelFileError(f"{info_path}: sidecar does not describe a {mode}/{levels} model.")
    classifier = DigitClassifier(levels)
    try:
        classifier.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{weights_path}: tensors do not fit the classifier.") from error
    return classifier.eval(), info


def load_or_train_classifier(data_dir, mode: str, levels: int | None = None, epochs: int = 2,
                             seed: int = 0, cache_dir: str | os.PathLike | None = None,
                             log: Callable[[str], None] | None = None
                             ) -> tuple[DigitClassifier, float]:
    """The cached classifier for (mode, levels) if there is a readable one, else train and
    cache it. Returns (classifier, its test accuracy)."""
    try:
        classifier, info = load_classifier(mode, levels, cache_dir)
        return classifier, float(info["test_accuracy"])
    except (ModelFileError, KeyError, TypeError, ValueError):
        pass  # absent or damaged: training again is cheap and rewrites it
    if log:
        log(f"Training the {mode} digit classifier ({epochs} epochs); it is cached afterwards.")
    started = time.perf_counter()
    classifier, test_accuracy = train_classifier(data_dir, mode, levels, epochs, seed)
    minutes = (time.perf_counter() - started) / 60
    save_classifier(classifier, mode, test_accuracy, cache_dir, epochs=epochs, seed=seed,
                    train_minutes=round(minutes, 2), threads=torch.get_num_threads())
    return classifier, test_accuracy


# How a measured completion is conditioned: no class, the digit's true class, or the class
# "auto" reads from the known pixels (model.posterior), as the most likely class or a class
# drawn from the posterior.
CLASS_MODES = ("none", "true", "likely", "drawn")
CLASS_MODE_NAMES = {
    "none": "no class",
    "true": "true class given",
    "likely": "auto: most likely class",
    "drawn": "auto: class drawn from the posterior",
}


def class_modes(pixelcnn: ImageModel, modes=CLASS_MODES) -> tuple[str, ...]:
    """The modes a model can be measured in: "none" only, without classes."""
    return tuple(modes) if pixelcnn.config.num_classes else ("none",)


def class_for(mode: str, label: int):
    """The `class_label` that completes a digit of class `label` in `mode`."""
    if mode not in CLASS_MODES:
        raise ValueError(f"Unknown class mode {mode!r}; use one of {', '.join(CLASS_MODES)}.")
    return {"none": None, "true": int(label)}.get(mode, mode)


def complete_bottom_halves(pixelcnn: ImageModel, images, labels, seed: int, mode: str = "none",
                           temperature: float = 1.0,
                           progress: Callable[[int, int], None] | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) uint8 completions of the bottom halves, image k with the fast sampler,
    seed + k and the class of `mode`; and the class each used (-1: none)."""
    images = np.asarray(images)
    cfg = pixelcnn.config
    known = bottom_half_known(cfg.height, cfg.width)
    completions = np.empty_like(images, dtype=np.uint8)
    used = np.empty(len(images), np.int64)
    # complete() takes one image (with N candidates), so go image by image.
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        completion = complete(pixelcnn, image, known, candidates=1, seed=seed + k,
                              temperature=temperature, class_label=class_for(mode, label))
        completions[k] = completion.run()[0]
        used[k] = -1 if completion.task.class_labels[0] is None else completion.task.class_labels[0]
        if progress:
            progress(k + 1, len(images))
    return completions, used


def posterior_accuracy(pixelcnn: ImageModel, images, labels, known=None) -> float:
    """How often the most likely class of p(class | known pixels) is the digit's label."""
    guesses = [int(np.argmax(class_posterior(pixelcnn, image, known))) for image in images]
    return float(np.mean(np.array(guesses) == np.asarray(labels)))


def recognition_rate(pixelcnn: ImageModel, classifier: DigitClassifier, images, labels,
                     seed: int, temperature: float = 1.0, modes=CLASS_MODES,
                     progress: Callable[[str, int, int], None] | None = None) -> dict:
    """How often the classifier names a bottom-half completion as the original digit, for
    each class mode the model allows (`class_modes`).

    `images` are (N, 1, 28, 28) levels as the PixelCNN sees them, `labels` their digits.
    Also returns the classifier's accuracy on the originals and on the top halves alone
    (bottom zeroed), for a class-conditional model how often its own posterior names the
    digit from the whole digit and from the top half, and per mode the completions, the
    predictions and the classes used.
    """
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"Need one label per image and at least one image; got {len(images)} "
                         f"images and {len(labels)} labels.")
    known = bottom_half_known(*images.shape[-2:])
    top_half_only = np.where(known, images, 0).astype(np.uint8)
    count = len(images)
    correct_original = int((predict(classifier, images) == labels).sum())
    correct_top_half = int((predict(classifier, top_half_only) == labels).sum())
    result = {
        "images": count,
        "classifier_correct_original": correct_original,
        "classifier_accuracy_original": correct_original / count,
        "classifier_correct_top_half_only": correct_top_half,
        "classifier_accuracy_top_half_only": correct_top_half / count,
        "temperature": float(temperature),
        "modes": {},
    }
    if pixelcnn.config.num_classes:
        result["posterior_accuracy_whole"] = posterior_accuracy(pixelcnn, images, labels)
        result["posterior_accuracy_top_half"] = posterior_accuracy(pixelcnn, images, labels,
                                                                   known)
    for mode in class_modes(pixelcnn, modes):
        completions, used = complete_bottom_halves(
            pixelcnn, images, labels, seed, mode, temperature,
            None if progress is None else lambda done, total, mode=mode: progress(mode, done,
                                                                                  total))
        predictions = predict(classifier, completions)
        recognised = int((predictions == labels).sum())
        result["modes"][mode] = {
            "recognised": recognised,
            "recognised_rate": recognised / count,
            "predictions": predictions,
            "completions": completions,
            "classes_used": used,
        }
    return result


def load_digit_model(name_or_path: str) -> tuple[Path, ImageModel, str, int]:
    """(path, model, data mode, levels) of a PixelCNN of 1 x 28 x 28 digits, which the
    digit classifier can judge; a bundled name, or a path that must exist."""
    path = resolve_model_path(name_or_path)
    card = read_card(path)
    mode, levels = card_data_mode(card, path)
    cfg = card["config"]
    if (cfg.channels, cfg.height, cfg.width) != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ModelFileError(f"{path}: the digit classifier needs a model of 1 x {IMAGE_SIZE} "
                             f"x {IMAGE_SIZE} images, not {cfg.channels} x {cfg.height} x "
                             f"{cfg.width}.")
    return path, load_model(path), mode, levels


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    path, pixelcnn, mode, levels = load_digit_model(args.model)
    images, labels = load_split(args.data, "test", mode, levels, args.count)
    classifier, test_accuracy = load_or_train_classifier(args.data, mode, levels, log=log)

    def progress(class_mode: str, done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            log(f"{class_mode}: completed {done}/{total}")

    result = recognition_rate(pixelcnn, classifier, images.numpy(), labels.numpy(),
                              args.seed, args.temperature, progress=progress)
    summary = {key: value for key, value in result.items() if not key.startswith(
        "classifier_correct") and key != "modes"}
    return {
        "model": str(path),
        **summary,
        "recognised_rate": {name: r["recognised_rate"] for name, r in result["modes"].items()},
        "classifier_test_accuracy": test_accuracy,
    }


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number.") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not 0 or more.")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio recognise",
        description="How often bottom-half completions of test digits are recognised as "
                    "the original digit by a small classifier.")
    add_digit_test_arguments(parser, count=500)
    return parser


def add_digit_test_arguments(parser: argparse.ArgumentParser, count: int) -> None:
    """The arguments of every command that completes test digits and judges them."""
    parser.add_argument("--model", required=True,
                        help="a name in resources/models, or the path of a model's files")
    parser.add_argument("--data", required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--count", type=positive_int, default=count,
                        help=f"use the first N test images (default {count})")
    parser.add_argument("--seed", type=int, default=0,
                        help="digit k is completed with seed + k (default 0)")
    parser.add_argument("--temperature", type=non_negative_float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")


def table(result: dict) -> str:
    lines = [f"{result['model']}, {result['images']} test digits, the bottom half (rows "
             f"{IMAGE_SIZE // 2}-{IMAGE_SIZE - 1}) completed at temperature "
             f"{result['temperature']:g}, one completion per digit:", "",
             "| class the completion is conditioned on | recognised as the original digit |",
             "| --- | --- |"]
    for mode, rate in result["recognised_rate"].items():
        lines.append(f"| {CLASS_MODE_NAMES[mode]} | {rate:.1%} |")
    lines += ["", f"classifier on the originals:      {result['classifier_accuracy_original']:.1%}",
              f"classifier on top halves only:    "
              f"{result['classifier_accuracy_top_half_only']:.1%}"]
    if "posterior_accuracy_whole" in result:
        lines += [f"the model's own class posterior, most likely class: whole digits "
                  f"{result['posterior_accuracy_whole']:.1%}, top halves "
                  f"{result['posterior_accuracy_top_half']:.1%}"]
    lines.append(f"classifier test accuracy (all 10k): {result['classifier_test_accuracy']:.2%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_measurement(build_parser().parse_args(argv), measure, table)


if __name__ == "__main__":
    sys.exit(main())
