"""A training run's state, and checkpoints of it: tensors and plain values only, written
atomically, read back with torch.load(weights_only=True), so --resume continues exactly where
a run left off."""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..base import ImageModel
from ..files import write_atomically
from ..io import build_model
from .distributed import World
from .evaluate import (
    UsageError,
)
from .schedule import BudgetSchedule
from .settings import CHECKPOINT_FORMAT, model_config

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
    # torch.compile(model) for scoring (validation, the card) when training compiles; each
    # invocation compiles it afresh, so it is never checkpointed.
    scoring_network: torch.nn.Module | None = None

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
