"""The settings of a training run: its command line, the defaults, what a resumed run keeps,
and the model they describe."""

from __future__ import annotations

import argparse

from ..config import ARCHITECTURES, ModelConfig
from . import emoji
from .data import MODES, levels_for_mode
from .engine import COMPILE_CHOICES, PRECISIONS
from .evaluate import (
    DATASETS,
    DEVICES,
    MODELS_DIR,
    UsageError,
    positive_int,
)
from .schedule import SCHEDULES

NO_CLASS = -1
EVAL_BATCH_SIZE = 256
CHECKPOINT_FORMAT = 1
_MODEL_DEFAULTS = ModelConfig()

DEFAULTS = {
    "dataset": "mnist", "image_size": None, "hflip": False,
    "data": None, "name": None, "output_dir": str(MODELS_DIR), "mode": "threshold",
    "levels": None, "architecture": _MODEL_DEFAULTS.architecture,
    "layers": _MODEL_DEFAULTS.layers, "hidden_channels": _MODEL_DEFAULTS.hidden_channels,
    "first_kernel_size": _MODEL_DEFAULTS.first_kernel_size,
    "kernel_size": _MODEL_DEFAULTS.kernel_size, "num_classes": 10, "epochs": 10,
    "batch_size": 64, "lr": 1e-3, "schedule": "cosine", "time_budget": None, "patience": None,
    "no_class_fraction": 0.2, "seed": 0, "device": "auto", "precision": "auto", "compile": "auto",
    "checkpoint_dir": None, "checkpoint_minutes": 3.0, "resume": False,
    "limit_train": None, "limit_eval": None, "init_from": None,
}
# What defines a run: a resumed run takes these from its checkpoint and refuses new values.
FIXED_ON_RESUME = (
    "dataset", "image_size", "hflip", "mode", "levels", "architecture", "layers",
    "hidden_channels", "first_kernel_size", "kernel_size", "num_classes", "batch_size", "lr",
    "schedule", "no_class_fraction", "seed", "limit_train", "limit_eval", "init_from",
)


# Command line


def build_parser() -> argparse.ArgumentParser:
    # No argparse defaults: the namespace holds only what was typed, which --resume needs
    # to tell a value given on purpose from one to take from the checkpoint.
    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio train", argument_default=argparse.SUPPRESS,
        description="Train a PixelCNN on MNIST or colour emoji and save it with its model "
                    "card.")
    d = DEFAULTS
    run = parser.add_argument_group("run")
    run.add_argument("--data", help="directory of the MNIST IDX files (--dataset emoji: "
                                    "where its renders are cached, default "
                                    "~/.cache/pixelcnn-studio)")
    run.add_argument("--name", required=True, help="model name: writes NAME.safetensors/.json")
    run.add_argument("--output-dir", help="where the model goes (default: resources/models)")
    run.add_argument("--device", choices=DEVICES, help="(default: auto, CUDA if present)")
    run.add_argument("--precision", choices=PRECISIONS,
                     help="bf16 autocast or fp32; auto (default): time both where bf16 is "
                          "native (CUDA, CPUs with AVX-512 BF16 or AMX) and keep the faster")
    run.add_argument("--compile", choices=COMPILE_CHOICES,
                     help="torch.compile the training step: on, off, or auto (default): time "
                          "a few steps each way, compile time included, and keep the faster")
    run.add_argument("--seed", type=int, help=f"(default: {d['seed']})")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS,
                      help="MNIST digits, or the Noto Color Emoji glyphs as RGB images "
                           "(default: mnist)")
    data.add_argument("--mode", choices=MODES, help=f"MNIST only (default: {d['mode']})")
    data.add_argument("--levels", type=positive_int,
                      help="levels K: gray levels (--mode gray), or per colour channel "
                           f"(--dataset emoji, default {emoji.LEVELS})")
    data.add_argument("--image-size", type=positive_int,
                      help=f"emoji only: rendered at N x N pixels (default: {emoji.IMAGE_SIZE})")
    data.add_argument("--hflip", action="store_true",
                      help="train on each image or its mirror image, chosen at random each "
                           "time it is shown")
    data.add_argument("--limit-train", type=positive_int, help="train on the first N images")
    data.add_argument("--limit-eval", type=positive_int,
                      help="validate and test on the first N images of those splits")
    arch = parser.add_argument_group("architecture")
    arch.add_argument("--architecture", choices=ARCHITECTURES, help="(default: gated)")
    for option in ("layers", "hidden_channels", "first_kernel_size", "kernel_size"):
        arch.add_argument("--" + option.replace("_", "-"), type=positive_int,
                          help=f"(default: {d[option]})")
    arch.add_argument("--num-classes", type=int,
                      help="class-conditional on this many classes, 0 for none (default: 10; "
                           "0 for emoji, which have no classes)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=positive_int,
                     help=f"total epochs, counting any done before --resume (default: "
                          f"{d['epochs']})")
    opt.add_argument("--batch-size", type=positive_int, help=f"(default: {d['batch_size']})")
    opt.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d['lr']})")
    opt.add_argument("--schedule", choices=SCHEDULES,
                     help="cosine decay over the planned steps, after a short warm-up "
                          "(default: cosine)")
    opt.add_argument("--no-class-fraction", type=float,
                     help="fraction of training images shown without their class, so the "
                          f"model also completes without one (default: {d['no_class_fraction']})")
    opt.add_argument("--time-budget", type=float, metavar="MINUTES",
                     help="stop after this many minutes of this invocation, then still "
                          "validate, test and save")
    opt.add_argument("--patience", type=float, metavar="EPOCHS",
                     help="stop once validation has not improved for this many epochs (a "
                          "small dataset overfits), then test and save the best weights")
    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint-dir", help="(default: checkpoints/NAME)")
    ckpt.add_argument("--checkpoint-minutes", type=float,
                      help=f"checkpoint this often; validation runs at each epoch's end (default: "
                           f"{d['checkpoint_minutes']})")
    ckpt.add_argument("--init-from", metavar="NAME_OR_PATH",
                      help="start from this model's weights (a bundled model's name or a "
                           "path) with a fresh optimizer and a short warm-up; its "
                           "architecture and data come with it, and the new card continues "
                           "its history")
    ckpt.add_argument("--resume", action="store_true",
                      help="continue exactly from the checkpoint in --checkpoint-dir")
    return parser


def given_settings(argv: list[str]) -> dict:
    """Only the options typed on the command line, by destination name."""
    return vars(build_parser().parse_args(argv))


def with_defaults(given: dict) -> dict:
    """DEFAULTS, then the emoji dataset's own (RGB at 24 x 24, 8 levels, no classes and no
    MNIST data mode), then the options typed."""
    defaults = dict(DEFAULTS)
    if given.get("dataset") == "emoji":
        defaults.update(mode=None, levels=emoji.LEVELS, image_size=emoji.IMAGE_SIZE,
                        num_classes=0)
    return {**defaults, **given}


def check_settings(s: dict) -> None:
    if s["dataset"] == "emoji":
        check_emoji_settings(s)
    else:
        check_mnist_settings(s)
    if not 0 <= s["no_class_fraction"] <= 1:
        raise UsageError(f"--no-class-fraction must lie within 0..1, not "
                         f"{s['no_class_fraction']}.")
    if not s["lr"] > 0:
        raise UsageError(f"--lr must be a positive number, not {s['lr']}.")
    if s["time_budget"] is not None and not s["time_budget"] >= 0:
        raise UsageError(f"--time-budget must be 0 or more minutes, not {s['time_budget']}.")
    if s["patience"] is not None and not s["patience"] > 0:
        raise UsageError(f"--patience must be a positive number of epochs, not "
                         f"{s['patience']}.")
    if not s["checkpoint_minutes"] >= 0:
        raise UsageError(f"--checkpoint-minutes must be 0 or more, not "
                         f"{s['checkpoint_minutes']}.")


def check_emoji_settings(s: dict) -> None:
    if s["mode"] is not None:
        raise UsageError(f"--mode {s['mode']} only applies to MNIST; emoji are RGB images "
                         "with --levels K per channel.")
    if s["num_classes"] != 0:
        raise UsageError(f"The emoji have no classes: --num-classes must be 0, not "
                         f"{s['num_classes']}.")
    if not 2 <= s["levels"] <= 256:
        raise UsageError(f"--levels must lie within 2..256, not {s['levels']}.")


def check_mnist_settings(s: dict) -> None:
    if s["data"] is None:
        raise UsageError("--data DIR, the folder of the MNIST files, is needed for MNIST.")
    if s["image_size"] is not None:
        raise UsageError(f"--image-size {s['image_size']} only applies to --dataset emoji; "
                         "MNIST digits are 28 x 28.")
    if s["mode"] == "gray" and s["levels"] is None:
        raise UsageError("--mode gray needs --levels K, the number of gray levels (2..256).")
    if s["mode"] != "gray" and s["levels"] is not None:
        raise UsageError(f"--levels {s['levels']} only applies to --mode gray, not to "
                         f"--mode {s['mode']}, which always has 2 levels.")


def resumed_settings(saved: dict, given: dict) -> dict:
    """The checkpoint's run-defining settings and total epochs, then this command line's."""
    # A checkpoint from before a setting existed ran with that setting's default.
    saved = {**DEFAULTS, **saved}
    changed = [f"--{key.replace('_', '-')} {given[key]} (the checkpoint has {saved[key]})"
               for key in FIXED_ON_RESUME if key in given and given[key] != saved[key]]
    if changed:
        raise UsageError("These settings cannot change on --resume: " + ", ".join(changed) + ".")
    inherited = {key: saved[key] for key in (*FIXED_ON_RESUME, "epochs")}
    return {**DEFAULTS, **inherited, **given}


def data_levels(s: dict) -> int:
    if s["dataset"] == "emoji":
        return s["levels"]  # per colour channel
    return levels_for_mode(s["mode"], s["levels"])


def model_config(s: dict) -> ModelConfig:
    colour = s["dataset"] == "emoji"
    size = s["image_size"] if colour else 28
    return ModelConfig(
        architecture=s["architecture"], channels=3 if colour else 1,
        distribution="categorical" if colour or s["mode"] == "gray" else "bernoulli",
        levels=data_levels(s), height=size, width=size,
        layers=s["layers"], hidden_channels=s["hidden_channels"],
        first_kernel_size=s["first_kernel_size"], kernel_size=s["kernel_size"],
        num_classes=s["num_classes"],
    )
