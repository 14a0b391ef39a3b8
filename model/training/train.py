"""Train a PixelCNN on MNIST or colour emoji and write it, with its model card, to
resources/models.

    pixelcnn-studio train --data ../shared/data/mnist --name gated-threshold --epochs 10
    pixelcnn-studio train --dataset emoji --name emoji-color --layers 8 --hidden-channels 48 \\
        --batch-size 32 --epochs 50 --hflip --time-budget 45

The emoji dataset (model/training/emoji.py) is rendered from the Noto Color Emoji font and cached on
first use: RGB, 24 x 24, 8 levels per channel by default, no classes.

The train split trains, the valid split picks the best weights (checked every epoch and at
every checkpoint), and the test split is scored once at the end for the card. Checkpoints
hold only tensors and plain Python values, are written atomically, and are read back with
torch.load(weights_only=True); --resume continues from the last one exactly where it left off.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..base import ImageModel
from ..card import model_paths, read_card
from ..config import ARCHITECTURES, ConfigError, ModelConfig
from ..distributions import nats_to_bits_per_dim, nll_nats
from ..files import write_atomically
from ..io import ModelFileError, build_model, save_model
from . import emoji
from .data import MODES, DatasetError, levels_for_mode
from .distributed import World, join, leave, replica_difference, wrap
from .engine import COMPILE_CHOICES, PRECISIONS, Engine, candidates, choose_engine, scorer_for
from .evaluate import (
    DATASETS,
    DEVICES,
    MODELS_DIR,
    Float32Logits,
    UsageError,
    load_emoji_split,
    load_split,
    mean_nll_nats,
    positive_int,
    resolve_device,
)
from .history import continue_card, history_of, inherited_settings, load_initial
from .schedule import SCHEDULES, BudgetSchedule

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
    "batch_size": 64, "lr": 1e-3, "schedule": "cosine", "time_budget": None,
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
    ckpt = parser.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint-dir", help="(default: checkpoints/NAME)")
    ckpt.add_argument("--checkpoint-minutes", type=float,
                      help=f"checkpoint and validate this often (default: "
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


# Training state


@dataclass
class Progress:
    """Everything about a run that changes as it trains and that a checkpoint restores."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0
    step: int = 0
    minutes_before: float = 0.0  # training wall time of earlier invocations
    order: torch.Tensor | None = None  # this epoch's shuffled image order
    best_valid_nats: float = math.inf
    best_step: int = 0
    best_state: dict | None = None
    learning_curve: list = field(default_factory=list)
    train_nats_sum: float = 0.0  # since the last learning-curve point
    train_images: int = 0
    commands: list = field(default_factory=list)  # every invocation of this run, in order
    history: dict | None = None  # the runs before this one, when started --init-from


@dataclass
class Run:
    settings: dict
    model: ImageModel
    optimizer: torch.optim.Optimizer
    scheduler: BudgetSchedule
    shuffle: torch.Generator  # image order and which labels are dropped
    progress: Progress
    device: torch.device
    steps_per_epoch: int
    checkpoint_path: Path
    world: World = field(default_factory=World)
    started: float = field(default_factory=time.monotonic)

    def minutes(self) -> float:
        return self.progress.minutes_before + (time.monotonic() - self.started) / 60

    def epochs_done(self) -> float:
        return self.progress.step / self.steps_per_epoch


def new_run(s: dict, device: torch.device, num_train: int) -> Run:
    torch.manual_seed(s["seed"])
    model = build_model(model_config(s)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    steps_per_epoch = math.ceil(num_train / s["batch_size"])
    total_steps = s["epochs"] * steps_per_epoch
    scheduler = BudgetSchedule(optimizer, s["schedule"], total_steps)
    shuffle = torch.Generator().manual_seed(s["seed"])
    return Run(s, model, optimizer, scheduler, shuffle, Progress(), device, steps_per_epoch,
               checkpoint_path(s))


def checkpoint_path(s: dict) -> Path:
    directory = s["checkpoint_dir"] or os.path.join("checkpoints", s["name"])
    return Path(directory) / "last.pt"


# Checkpoints


def save_checkpoint(run: Run) -> None:
    p = run.progress
    payload = {
        "format": CHECKPOINT_FORMAT,
        "settings": run.settings,
        "config": run.model.config.to_dict(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": p.epoch, "step_in_epoch": p.step_in_epoch, "step": p.step,
        "minutes": run.minutes(),
        "order": p.order,
        "shuffle_rng": run.shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "best_valid_nats": p.best_valid_nats, "best_step": p.best_step,
        "best_model": p.best_state,
        "learning_curve": p.learning_curve,
        "train_nats_sum": p.train_nats_sum, "train_images": p.train_images,
        "commands": p.commands,
        "history": p.history,
    }
    path = run.checkpoint_path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: torch.save(payload, temporary))


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{path}: no checkpoint to resume from.")
    try:
        # weights_only: tensors and plain containers only, never arbitrary pickled objects.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise UsageError(f"{path}: not a readable training checkpoint ({error}).") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path}: not a training checkpoint of format {CHECKPOINT_FORMAT}.")
    return checkpoint


def restore(run: Run, checkpoint: dict) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.shuffle.set_state(checkpoint["shuffle_rng"])
    torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    run.progress = Progress(
        epoch=checkpoint["epoch"], step_in_epoch=checkpoint["step_in_epoch"],
        step=checkpoint["step"], minutes_before=checkpoint["minutes"],
        order=checkpoint["order"], best_valid_nats=checkpoint["best_valid_nats"],
        best_step=checkpoint["best_step"], best_state=checkpoint["best_model"],
        learning_curve=checkpoint["learning_curve"],
        train_nats_sum=checkpoint["train_nats_sum"], train_images=checkpoint["train_images"],
        commands=list(checkpoint.get("commands", [])),  # checkpoints before this kept none
        history=checkpoint.get("history"),
    )


def previous_card(destination: Path) -> dict:
    """The card a run to `destination` wrote before; empty where there is none readable."""
    try:
        return read_card(model_paths(destination)[1])
    except (OSError, ModelFileError):
        return {}


def commands_from_card(destination: Path) -> list[str]:
    """The run's commands so far as the card it wrote lists them: the history of a
    checkpoint made before checkpoints kept one (empty without a readable card)."""
    card = previous_card(destination)
    if "training_commands" in card:
        return list(card["training_commands"])
    return [card["command"]] if "command" in card else []


# The loop


@dataclass
class Splits:
    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def load_splits(s: dict, device: torch.device) -> Splits:
    levels = data_levels(s)
    if s["dataset"] == "emoji":
        train, valid, test = (
            load_emoji_split(s["data"], split, levels, s["image_size"], limit)
            for split, limit in (("train", s["limit_train"]), ("valid", s["limit_eval"]),
                                 ("test", s["limit_eval"])))
        return Splits(tuple(t.to(device) for t in train), valid, test)
    train = load_split(s["data"], "train", s["mode"], levels, s["limit_train"])
    valid = load_split(s["data"], "valid", s["mode"], levels, s["limit_eval"])
    test = load_split(s["data"], "test", s["mode"], levels, s["limit_eval"])
    # MNIST as uint8 is ~40 MB: keep the training set on the device, no copy per batch.
    return Splits(tuple(t.to(device) for t in train), valid, test)


def batch_labels(run: Run, labels: torch.Tensor) -> torch.Tensor | None:
    """True labels, with a fraction replaced by "no class"; None for unconditional models."""
    if run.model.config.num_classes == 0:
        return None
    drop = torch.rand(len(labels), generator=run.shuffle) < run.settings["no_class_fraction"]
    return labels.masked_fill(drop.to(labels.device), NO_CLASS)


def train_step(run: Run, scorer: Float32Logits, x: torch.Tensor, labels) -> torch.Tensor:
    """One optimiser step; returns the batch's summed nats (a tensor, to avoid a sync)."""
    nats = nll_nats(scorer, x, labels)
    dims = x[0].numel()
    # Per dimension: the same optimum as per image, on a scale independent of image size.
    loss = nats.mean() / dims
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return nats.detach().sum()


def validate(run: Run, splits: Splits, dtype, say) -> None:
    """Score the valid split, add a learning-curve point and keep the best weights."""
    p = run.progress
    valid_nats = mean_nll_nats(run.model, splits.valid[0], None,
                               batch_size=EVAL_BATCH_SIZE, autocast_dtype=dtype)
    train_nats = p.train_nats_sum / p.train_images if p.train_images else None
    p.learning_curve.append({
        "step": p.step, "epoch": round(run.epochs_done(), 4),
        "minutes": round(run.minutes(), 3), "train_nats": train_nats, "valid_nats": valid_nats,
    })
    p.train_nats_sum, p.train_images = 0.0, 0
    best = valid_nats < p.best_valid_nats
    if best:
        p.best_valid_nats, p.best_step = valid_nats, p.step
        p.best_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    train_text = "-" if train_nats is None else f"{train_nats:.2f}"
    say(f"epoch {run.epochs_done():.2f}, step {p.step}: train {train_text}, "
        f"valid {valid_nats:.2f} nats per image" + (" (best so far)" if best else ""))


@dataclass
class Session:
    """This invocation's clock, speed and progress bar: nothing here is checkpointed."""

    bar: object
    deadline: float | None  # time.monotonic() when the time budget ends
    last_checkpoint: float = field(default_factory=time.monotonic)
    last_step: float = field(default_factory=time.monotonic)
    images: int = 0
    seconds: float = 0.0  # in training steps only, for images per second

    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def seconds_left(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline - now


def pick_engine(run: Run, train_split, say) -> tuple[Engine, Float32Logits, list]:
    """The fastest engine among --compile x --precision, timed on one real training batch
    (drawn without touching the run's own random streams)."""
    s = run.settings
    engines = candidates(s["compile"], s["precision"], run.device)
    images, labels = train_split
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    index = index[:s["batch_size"]].to(run.device)
    x, y = images[index].long(), labels[index]
    if run.model.config.num_classes:
        y = y.masked_fill(torch.arange(len(y), device=y.device) % 5 == 0, NO_CLASS)
    else:
        y = None
    if len(engines) > 1:
        say(f"Timing {len(engines)} ways to train on this host "
            f"({', '.join(map(str, engines))}):")
    engine, scorer, timings = choose_engine(run.model, x, y, engines, say)
    if run.world.distributed:  # process 0's choice, around the DDP-wrapped model
        engine = engines[int(run.world.agree([engines.index(engine)])[0])]
        scorer = scorer_for(run.model, engine, wrap(run.model, run.world))
    say(f"Training {engine}." if not timings else
        f"Training {engine}: {max(t.images_per_second for t in timings if t.images_per_second)}"
        " images/s in the timing.")
    return engine, scorer, timings


def train(run: Run, splits: Splits) -> dict:
    """Train to the planned epochs or the time budget; returns this invocation's speed and
    how it trained."""
    s, p = run.settings, run.progress
    world = run.world
    say = _stderr if world.writes else _silent
    engine, scorer, timings = pick_engine(run, splits.train, say)
    deadline = None if s["time_budget"] is None else run.started + s["time_budget"] * 60
    bar = (progress_bar(total=s["epochs"] * run.steps_per_epoch, initial=p.step)
           if world.writes else _SilentBar())
    session = Session(bar, deadline)
    out_of_time = False
    while p.epoch < s["epochs"] and not out_of_time:
        out_of_time = train_until_pause(run, splits.train, scorer, session)
        if p.step_in_epoch == run.steps_per_epoch:
            p.epoch, p.step_in_epoch, p.order = p.epoch + 1, 0, None
        if world.writes:
            validate(run, splits, engine.autocast_dtype, session.bar.write)
            save_checkpoint(run)
        world.barrier()
        session.last_checkpoint = time.monotonic()
    session.bar.close()
    if out_of_time:
        say(f"Time budget of {s['time_budget']} minutes reached after {p.step} steps, "
            f"the learning rate annealed to {run.scheduler.factor():.3g} x --lr; stopping.")
    return {"images_per_second": round(session.images_per_second() * world.size, 1),
            "precision": engine.precision, "compiled": engine.compiled,
            "engine_timings": [{"engine": str(t.engine), "images_per_second":
                                t.images_per_second, "seconds": t.seconds,
                                **({"error": t.error} if t.error else {})} for t in timings]}


def train_until_pause(run: Run, train_split, scorer: Float32Logits, session: Session) -> bool:
    """Steps until the epoch ends or a checkpoint is due; True if time ran out first."""
    s, p = run.settings, run.progress
    images, labels = train_split
    if p.order is None:
        p.order = torch.randperm(len(images), generator=run.shuffle)
    pending = torch.zeros((), device=run.device)  # summed nats, read back only now and then
    out_of_time = False
    while p.step_in_epoch < run.steps_per_epoch and not out_of_time:
        started = time.monotonic()
        start = p.step_in_epoch * s["batch_size"]
        index = p.order[start:start + s["batch_size"]].to(run.device)
        x = images[index].long()
        if s["hflip"]:
            mirror = torch.rand(len(index), generator=run.shuffle) < 0.5
            x = torch.where(mirror.to(run.device)[:, None, None, None], x.flip(-1), x)
        # The whole global batch's random draws above, then this process's share of it.
        y = batch_labels(run, labels[index])
        x, y = run.world.shard(x), run.world.shard(y)
        pending += train_step(run, scorer, x, y)
        p.step, p.step_in_epoch = p.step + 1, p.step_in_epoch + 1
        p.train_images += len(index)  # the global batch: its nats are summed over processes
        session.images += len(x)
        now = time.monotonic()
        session.seconds += now - started
        # The schedule's share of this step counts the pauses since the last one too.
        run.scheduler.step(now - session.last_step, session.seconds_left(now))
        session.last_step = now
        session.bar.update(1)
        if p.step % 20 == 0:
            p.train_nats_sum += run.world.total(pending).item()
            pending.zero_()
            show_speed(run, session)
        left = session.seconds_left(now)
        pause = now - session.last_checkpoint >= s["checkpoint_minutes"] * 60
        out_of_time = left is not None and left <= 0
        if run.world.distributed:  # process 0's clock decides for every process
            position, out_of_time, pause = run.world.agree(
                [run.scheduler.position, out_of_time, pause])
            run.scheduler.set_position(position)
        if pause:
            break
    p.train_nats_sum += run.world.total(pending).item()
    show_speed(run, session)
    return out_of_time


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _silent(text: str) -> None:
    pass


def show_speed(run: Run, session: Session) -> None:
    p = run.progress
    session.bar.set_postfix_str(
        f"epoch {run.epochs_done():.2f}, "
        f"loss {p.train_nats_sum / max(1, p.train_images):.2f} nats/image, "
        f"{session.images_per_second() * run.world.size:.0f} images/s")


def progress_bar(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the "train" extra; training works without it
        return _SilentBar()
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


class _SilentBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)

    def close(self) -> None:
        pass


# The model card


def cpu_name() -> str:
    # platform.processor() is often just "x86_64" on Linux; /proc/cpuinfo names the model.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> dict:
    info = {
        "processor": cpu_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def final_card(run: Run, splits: Splits, speed: dict) -> dict:
    """Score the best weights (loaded into run.model) in float32 and describe the run."""
    s, p = run.settings, run.progress
    valid_nats = mean_nll_nats(run.model, splits.valid[0], batch_size=EVAL_BATCH_SIZE)
    test_images, test_labels = splits.test
    test_nats = mean_nll_nats(run.model, test_images, batch_size=EVAL_BATCH_SIZE)
    card = {
        "name": s["name"],
        "dataset": s["dataset"],
        "data_mode": emoji.DATA_MODE if s["dataset"] == "emoji" else s["mode"],
        "levels": run.model.config.levels,
        "epochs": round(run.epochs_done(), 4),
        "steps": p.step,
        "wall_minutes": round(run.minutes(), 3),
        "hardware": hardware(run.device),
        "valid_nll_nats": valid_nats,
        "test_nll_nats": test_nats,
        "test_bits_per_dim": nats_to_bits_per_dim(test_nats, int(np.prod(test_images.shape[1:]))),
        "learning_curve": p.learning_curve,
        "command": p.commands[-1],
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training": {
            "best_step": p.best_step, "batch_size": s["batch_size"], "lr": s["lr"],
            "schedule": s["schedule"], "no_class_fraction": s["no_class_fraction"],
            "seed": s["seed"], "precision": speed["precision"],
            "compiled": speed["compiled"], "engine_timings": speed["engine_timings"],
            "valid_images": len(splits.valid[0]), "test_images": len(test_images),
            "train_images": len(splits.train[0]), "hflip": s["hflip"],
            "images_per_second": speed["images_per_second"],
        },
    }
    if "distributed" in speed:
        card["training"]["distributed"] = speed["distributed"]
    if len(p.commands) > 1:  # a run resumed: every command it took, in order
        card["training_commands"] = p.commands
    if p.history is not None:
        continue_card(card, p.history)
    if s["dataset"] == "emoji":
        card["emoji"] = emoji.description(s["image_size"], s["data"])
    if run.model.config.num_classes:
        # The unconditional number above is the honest one; this shows what a class adds.
        card["test_nll_nats_with_labels"] = mean_nll_nats(
            run.model, test_images, test_labels, batch_size=EVAL_BATCH_SIZE)
    return card


def notes_from_previous_card(destination: Path, card: dict) -> list[str]:
    """Add to `card` what a person wrote on the card this resumed run replaces (why K was
    chosen, the model's status): the trainer writes every other field afresh."""
    previous = previous_card(destination)
    kept = [key for key in previous if key not in card and key != "config"]
    card.update({key: previous[key] for key in kept})
    return kept


# Entry point


def prepare(argv: list[str]) -> tuple[Run, Splits]:
    given = given_settings(argv)
    settings = with_defaults(given)
    checkpoint = None
    initial = None
    if settings["resume"]:
        checkpoint = read_checkpoint(checkpoint_path(settings))
        settings = resumed_settings(checkpoint["settings"], given)
    elif settings["init_from"] is not None:
        initial = load_initial(settings["init_from"])
        settings = with_defaults({**given, **inherited_settings(initial[1], given)})
    elif checkpoint_path(settings).exists():
        # Starting afresh would overwrite it: maybe hours of training.
        raise UsageError(f"{checkpoint_path(settings)} already exists; pass --resume to continue "
                         "that run, or delete it or pick another --checkpoint-dir to start anew.")
    check_settings(settings)
    device = resolve_device(settings["device"])
    world = join(device)
    splits = load_splits(settings, device)
    run = new_run(settings, device, len(splits.train[0]))
    run.world = world
    if initial is not None:
        model, card, _ = initial
        run.model.load_state_dict(model.state_dict())
        run.progress.history = history_of(card, settings["init_from"])
    if checkpoint is not None:
        restore(run, checkpoint)
        if "commands" not in checkpoint:  # saved with this run's checkpoints from now on
            run.progress.commands = commands_from_card(
                Path(settings["output_dir"]) / settings["name"])
    run.progress.commands.append("pixelcnn-studio train " + shlex.join(argv))
    return run, splits


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run, splits = prepare(argv)
        speed = train(run, splits)
    except (UsageError, DatasetError, ModelFileError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return finish(run, splits, speed)
    finally:
        leave(run.world)


def finish(run: Run, splits: Splits, speed: dict) -> int:
    """Check the replicas agree, then (process 0) score the best weights and write them."""
    difference = replica_difference(run.model, run.world)
    if not run.world.writes:
        run.world.barrier()  # leave together, once process 0 has written the model
        return 0
    if run.world.distributed:
        speed["distributed"] = {**run.world.describe(run.settings["batch_size"]),
                                "replica_max_difference": difference}
    if run.progress.best_state is not None:
        run.model.load_state_dict(run.progress.best_state)
    card = final_card(run, splits, speed)
    destination = Path(run.settings["output_dir"]) / run.settings["name"]
    if run.settings["resume"] or run.settings["init_from"]:
        kept = notes_from_previous_card(destination, card)
        if kept:
            print("kept from the previous card, check they still hold: " + ", ".join(kept))
    weights_path, _ = save_model(run.model, destination, **card)
    run.world.barrier()
    print(f"{card['name']}: {card['epochs']:.2f} epochs, {card['steps']} steps in "
          f"{card['wall_minutes']:.1f} min at {card['training']['images_per_second']:.0f} "
          f"images/s; valid {card['valid_nll_nats']:.2f}, test {card['test_nll_nats']:.2f} "
          f"nats per image ({card['test_bits_per_dim']:.4f} bits/dim); saved {weights_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
