"""Continued training: start a run from a trained model's weights and keep its whole history.

`--init-from NAME_OR_PATH` takes a bundled model's name or a path to a model's files. The new
run takes that model's architecture and data from its card (typed values that differ are
refused), starts from its weights with a fresh optimizer and a short warm-up, and its card
carries on the old one: every command, the total wall time, epochs and steps, and one
learning curve across all the runs, so training accumulates across machines and days
without a checkpoint ever being committed.
"""

from __future__ import annotations

from ..card import read_card
from ..io import ModelFileError, load_model
from ..registry import resolve_model
from .evaluate import UsageError

ARCHITECTURE_KEYS = ("architecture", "layers", "hidden_channels", "first_kernel_size",
                     "kernel_size", "num_classes")


def load_initial(name_or_path: str):
    """(model, card, path) of the model a run starts from; a clear error if unreadable."""
    path = resolve_model(name_or_path)
    try:
        return load_model(path), read_card(path), path
    except (OSError, ModelFileError) as error:
        raise UsageError(f"--init-from {name_or_path}: {error}") from error


def inherited_settings(card: dict, given: dict) -> dict:
    """The run-defining settings the initial model fixes: its architecture and its data.
    A typed value that differs is refused rather than silently ignored."""
    config = card["config"]
    inherited = {key: getattr(config, key) for key in ARCHITECTURE_KEYS}
    if config.channels == 3:
        inherited.update(dataset="emoji", levels=config.levels, mode=None,
                         image_size=config.height)
    else:
        mode = card.get("data_mode", "gray" if config.distribution == "categorical"
                        else "threshold")
        inherited.update(dataset="mnist", mode=mode,
                         levels=config.levels if mode == "gray" else None)
    changed = [f"--{key.replace('_', '-')} {given[key]} (the model has {inherited[key]})"
               for key in inherited if key in given and given[key] != inherited[key]]
    if changed:
        raise UsageError("With --init-from these settings come from the model and cannot "
                         "change: " + ", ".join(changed) + ".")
    return inherited


def history_of(card: dict, source: str) -> dict:
    """What a run started from this card inherits: its commands, time and learning curve
    (those of every run before it too, when it was itself continued)."""
    commands = card.get("training_commands") or ([card["command"]] if "command" in card else [])
    return {
        "model": source, "test_nll_nats": card.get("test_nll_nats"),
        "commands": list(commands), "wall_minutes": float(card.get("wall_minutes", 0.0)),
        "epochs": float(card.get("epochs", 0.0)), "steps": int(card.get("steps", 0)),
        "learning_curve": list(card.get("learning_curve", [])),
    }


def continue_card(card: dict, history: dict) -> None:
    """Extend a finished run's card (in place) with the history it started from: totals
    across all runs, every command, one learning curve whose steps, epochs and minutes count
    from the first run (each point names the run it belongs to)."""
    runs_before = 1 + max((point.get("run", 0) for point in history["learning_curve"]),
                          default=0)
    curve = [{**point, "run": point.get("run", 0)} for point in history["learning_curve"]]
    curve += [{**point, "run": runs_before,
               "step": point["step"] + history["steps"],
               "epoch": round(point["epoch"] + history["epochs"], 4),
               "minutes": round(point["minutes"] + history["wall_minutes"], 3)}
              for point in card["learning_curve"]]
    this_run = {key: card[key] for key in ("epochs", "steps", "wall_minutes")}
    card.update(
        epochs=round(card["epochs"] + history["epochs"], 4),
        steps=card["steps"] + history["steps"],
        wall_minutes=round(card["wall_minutes"] + history["wall_minutes"], 3),
        learning_curve=curve,
        training_commands=[*history["commands"],
                           *card.get("training_commands", [card["command"]])],
        initialised_from={"model": history["model"], "test_nll_nats": history["test_nll_nats"],
                          "this_run": this_run},
    )
