"""A model's JSON card: its config and what its training recorded. Reading one needs no
PyTorch, so the app can lay out its canvas for a model before the weights are loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .config import ConfigError, ModelConfig


class ModelFileError(ValueError):
    """A model file that is missing, damaged or does not match its config."""


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The (weights, card) pair for `x.safetensors`, `x.json` or the stem `x`."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def read_card(path: str | os.PathLike) -> dict:
    """The JSON card beside a model's weights, with a validated "config"."""
    _, card_path = model_paths(path)
    if not card_path.is_file():
        raise ModelFileError(f"{card_path}: model config file not found.")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{card_path}: cannot be read ({error}).") from error
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{card_path}: not valid JSON ({error}).") from error
    if not isinstance(card, dict) or "config" not in card:
        raise ModelFileError(f"{card_path}: has no \"config\" object.")
    try:
        card["config"] = ModelConfig.from_dict(card["config"])
    except ConfigError as error:
        raise ModelFileError(f"{card_path}: {error}") from error
    return card
