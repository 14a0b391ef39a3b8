"""The card a trained model is written with: data, hardware, how it trained, validation and
test NLL, the learning curve and every command."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..card import model_paths, read_card
from ..distributions import nats_to_bits_per_dim
from ..io import ModelFileError
from . import emoji
from .checkpoints import Run
from .evaluate import (
    mean_nll_nats,
)
from .history import continue_card
from .settings import EVAL_BATCH_SIZE


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


def final_card(run: Run, splits, speed: dict) -> dict:
    """Score the best weights (loaded into run.model) in float32 on `splits` (train.Splits)
    and describe the run."""
    s, p = run.settings, run.progress
    def score(images, labels=None):
        return mean_nll_nats(run.model, images, labels, batch_size=EVAL_BATCH_SIZE,
                             network=run.scoring_network)

    valid_nats = score(splits.valid[0])
    test_images, test_labels = splits.test
    test_nats = score(test_images)
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
            "patience": s["patience"], "stopped": speed["stopped"],
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
        card["test_nll_nats_with_labels"] = score(test_images, test_labels)
    return card


def notes_from_previous_card(destination: Path, card: dict) -> list[str]:
    """Add to `card` what a person wrote on the card this resumed run replaces (why K was
    chosen, the model's status): the trainer writes every other field afresh."""
    previous = previous_card(destination)
    kept = [key for key in previous if key not in card and key != "config"]
    card.update({key: previous[key] for key in kept})
    return kept
