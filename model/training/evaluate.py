"""Measure a trained model's likelihood on a split of MNIST or of the colour emoji.

    pixelcnn-studio evaluate --model NAME_OR_PATH --data DIR [--split test|valid] [--json]
    pixelcnn-studio evaluate --model emoji-color [--dataset emoji]

The split is prepared exactly as in training, from the dataset and data mode recorded on the
model's card. By default every image is scored without its class (label -1, "no class"): that is the
honest likelihood, comparable to published results; --with-labels conditions on the true class.
The batched scoring function here is also what training uses for validation and testing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..base import ImageModel
from ..distributions import nats_to_bits_per_dim, nll_nats
from ..io import ModelFileError, load_model, model_paths, read_card
from ..registry import MODELS_DIR, resolve_model
from ..task import DEVICES, pick_device
from . import emoji
from .data import MODES, DatasetError, MnistDataset

DATASETS = ("mnist", "emoji")


class UsageError(ValueError):
    """A command-line value that cannot work (a missing device, a bad combination)."""


def resolve_device(name: str) -> torch.device:
    """The device a training or scoring command runs on: "auto" is CUDA when present, else
    the CPU (Apple's MPS only when asked for: bf16 autocast and compiling are untested
    there, and fp32 is what "auto" picks on it)."""
    if name not in DEVICES:
        raise UsageError(f"Unknown device {name!r}; expected one of {', '.join(DEVICES)}.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return pick_device(name)
    except RuntimeError as error:
        raise UsageError(str(error)) from None


def load_split(data_dir, split: str, mode: str, levels: int | None = None,
               limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 levels N x 1 x 28 x 28, int64 labels N), the first `limit` only."""
    dataset = MnistDataset(data_dir, split, mode, levels)
    images, labels = dataset.images, dataset.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if len(images) == 0:
        raise DatasetError(f"{data_dir}: the {split} split holds no images to use.")
    return images, labels


def load_emoji_split(directory, split: str, levels: int, size: int,
                     limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One emoji split as (uint8 levels N x 3 x size x size, int64 codepoints N), the first
    `limit` only; `directory` holds the rendered cache (None: the default cache folder)."""
    images, codepoints = emoji.load_emoji(split, size, levels, directory)
    if limit is not None:
        images, codepoints = images[:limit], codepoints[:limit]
    if len(images) == 0:
        raise DatasetError(f"The emoji {split} split holds no images to use.")
    return torch.from_numpy(images), torch.from_numpy(codepoints)


class Float32Logits:
    """Runs a model under autocast but hands back float32 logits, so the loss that
    nll_nats computes from them is in float32 whatever precision the network ran in."""

    def __init__(self, model: ImageModel | torch.nn.Module,
                 autocast_dtype: torch.dtype | None = None, config=None):
        # `model` may be a wrapper (compiled, DDP) that runs a model of `config`.
        self.model = model
        self.config = model.config if config is None else config
        self.autocast_dtype = autocast_dtype

    def __call__(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        with autocast(x.device, self.autocast_dtype):
            logits = self.model(x, labels)
        return logits.float()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast on `device` with `dtype`, or nothing when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def mean_nll_nats(model: ImageModel, images: torch.Tensor, labels: torch.Tensor | None = None,
                  *, batch_size: int = 256, autocast_dtype: torch.dtype | None = None,
                  network: torch.nn.Module | None = None) -> float:
    """Mean negative log-likelihood in nats per image, scored in batches on the model's device.

    `labels` None scores every image without a class; the model is left in the mode
    (train or eval) it came in. `network`, when given, runs instead of the model: a
    `torch.compile(model, dynamic=False)` (training's Run.scoring_network, evaluate --compile),
    whose batches are padded to `batch_size` so that one compiled shape serves every batch.
    """
    device = next(model.parameters()).device
    scorer = Float32Logits(model if network is None else network, autocast_dtype, model.config)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device).long()
                y = None if labels is None else labels[start:start + batch_size].to(device)
                count = len(x)
                if network is not None and count < batch_size:
                    x, y = _padded(x, batch_size), None if y is None else _padded(y, batch_size)
                total += nll_nats(scorer, x, y)[:count].double().sum().item()
    finally:
        model.train(was_training)
    return total / len(images)


def _padded(batch: torch.Tensor, size: int) -> torch.Tensor:
    """`batch` with zeros appended along its first dimension up to `size` rows."""
    padding = batch.new_zeros((size - len(batch), *batch.shape[1:]))
    return torch.cat([batch, padding])


def resolve_model_path(name_or_path: str) -> Path:
    """The weights file of a bundled model's name or of a path (registry.resolve_model)."""
    path = model_paths(resolve_model(name_or_path))[0]
    if not path.is_file():
        named = MODELS_DIR / f"{name_or_path}.safetensors"
        raise ModelFileError(f"No model {name_or_path!r}: neither {named} nor {path} exists.")
    return path


def card_data_mode(card: dict, path: Path) -> tuple[str, int]:
    """The (mode, levels) the model was trained on, as recorded on its card."""
    mode = card.get("data_mode")
    if mode not in MODES:
        raise ModelFileError(
            f"{path}: the card's \"data_mode\" is {mode!r}, not one of {', '.join(MODES)}; "
            "cannot tell how to prepare the data."
        )
    levels = card["config"].levels
    if card.get("levels", levels) != levels:
        raise ModelFileError(
            f"{path}: the card says {card['levels']!r} levels but its config has {levels}."
        )
    return mode, levels


def card_dataset(card: dict, path: Path, asked: str | None = None) -> str:
    """"mnist" or "emoji", as the card says (cards from before emoji say nothing: MNIST);
    `asked` is what the command line named, which must agree."""
    dataset = card.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise ModelFileError(f"{path}: the card's \"dataset\" is {dataset!r}, not one of "
                             f"{', '.join(DATASETS)}.")
    if asked is not None and asked != dataset:
        raise UsageError(f"{path} was trained on {dataset}, not on {asked}.")
    return dataset


def evaluation_split(args: argparse.Namespace, card: dict, path: Path):
    """The split the command asks for, prepared as the model's training prepared it: (images,
    labels), labels None for emoji, which have none."""
    if card_dataset(card, path, args.dataset) == "emoji":
        if args.with_labels:
            raise UsageError("The emoji have no classes: --with-labels does not apply.")
        cfg = card["config"]
        images, _ = load_emoji_split(args.data, args.split, cfg.levels, cfg.height, args.limit)
        return images, None
    if args.data is None:
        raise UsageError(f"{path} is an MNIST model: --data DIR, the folder of the MNIST "
                         "files, is needed.")
    mode, levels = card_data_mode(card, path)
    return load_split(args.data, args.split, mode, levels, args.limit)


def evaluate(args: argparse.Namespace) -> dict:
    path = resolve_model_path(args.model)
    card = read_card(path)
    device = resolve_device(args.device)
    model = load_model(path, device)
    images, labels = evaluation_split(args, card, path)
    started = time.perf_counter()
    network = torch.compile(model, dynamic=False) if args.compile else None
    try:
        nats = mean_nll_nats(model, images, labels if args.with_labels else None,
                             batch_size=args.batch_size, network=network)
    except Exception as error:  # noqa: BLE001 - the compile failed: no C++ compiler, ...
        if network is None:
            raise
        first_line = str(error).splitlines()[0][:200] if str(error) else ""
        raise UsageError(f"--compile: torch.compile cannot build here ({type(error).__name__}: "
                         f"{first_line}); score without it.") from error
    dims = int(np.prod(images.shape[1:]))
    return {"model": str(path), "split": args.split, "images": len(images),
            "nll_nats": nats, "bits_per_dim": nats_to_bits_per_dim(nats, dims),
            "compiled": args.compile, "seconds": round(time.perf_counter() - started, 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio evaluate",
        description="Negative log-likelihood of a trained model on an MNIST or emoji split.")
    parser.add_argument("--model", required=True,
                        help="a name in resources/models, or the path of a model's files")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="check that the model was trained on this (default: its card's)")
    parser.add_argument("--data", help="directory of the MNIST IDX files (emoji: where the "
                                       "renders are cached, default ~/.cache/pixelcnn-studio)")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="score only the first N images of the split")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--with-labels", action="store_true",
                        help="condition on each image's true class (default: no class)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--compile", action="store_true",
                        help="score through torch.compile (needs a C++ compiler): about twice "
                             "as fast on a CPU for 10,000 digits, the same numbers to 1e-4")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number.")
    return value


def run_measurement(args: argparse.Namespace,
                    measure: Callable[[argparse.Namespace, Callable[[str], None]], dict],
                    table: Callable[[dict], str]) -> int:
    """A measuring command's main: measure(args, log) with progress logged to stderr, then
    the result as JSON (--json) or as table(result); a model, data or usage problem is one
    "error: ..." line on stderr and exit status 2."""

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = measure(args, log)
    except (ModelFileError, DatasetError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else table(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with_or_without = "with true labels" if args.with_labels else "without labels"
    return run_measurement(
        args, lambda args, log: evaluate(args),
        lambda result: f"{result['model']} on {result['images']} {args.split} images "
                       f"({with_or_without}): {result['nll_nats']:.3f} nats per image, "
                       f"{result['bits_per_dim']:.4f} bits per dimension "
                       f"({result['seconds']} s{', compiled' if result['compiled'] else ''})")


if __name__ == "__main__":
    sys.exit(main())
