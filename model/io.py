"""Saving and loading models: weights in safetensors, config (and model card) in JSON.

`name.safetensors` holds the weights and `name.json` the config under "config" plus
whatever the training command recorded about the model. Loading checks everything and
names the file and the problem; no pickle is ever read.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .base import ImageModel
from .card import ModelFileError, model_paths, read_card
from .config import ModelConfig
from .files import write_atomically, write_text_atomically
from .gated import GatedPixelCNN
from .pixelcnn import PixelCNN

ARCHITECTURE_CLASSES = {"pixelcnn": PixelCNN, "gated": GatedPixelCNN}
# A safetensors header is JSON of a few KB; a huge length means it is no such file.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def build_model(config: ModelConfig) -> ImageModel:
    return ARCHITECTURE_CLASSES[config.architecture](config)


def save_model(model: ImageModel, path: str | os.PathLike, **card) -> tuple[Path, Path]:
    """Write weights and card atomically (a crash never leaves half a file)."""
    weights_path, card_path = model_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(weights_path, lambda temporary: save_file(state, str(temporary)))
    write_text_atomically(card_path, json.dumps({"config": model.config.to_dict(), **card},
                                                indent=2) + "\n")
    return weights_path, card_path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ImageModel:
    """Rebuild a model from its card and weights, in eval mode, checking both."""
    weights_path, _ = model_paths(path)
    card = read_card(path)
    model = build_model(card["config"])
    state = read_weights(weights_path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{weights_path}: tensor names do not match the config"
            + (f"; missing {_some(missing)}" if missing else "")
            + (f"; unexpected {_some(unexpected)}" if unexpected else "") + "."
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelFileError(
                f"{weights_path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"but the config needs {tuple(expected[name].shape)}."
            )
        if not torch.isfinite(tensor).all():
            raise ModelFileError(f"{weights_path}: tensor {name!r} holds NaN or infinite values.")
    model.load_state_dict(state)
    return model.to(device).eval()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, after checking its header against its size."""
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file not found.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            header_length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
            if header_length is None or header_length > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path}: not a safetensors file.")
            header_bytes = f.read(header_length)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error}).") from error
    if len(header_bytes) < header_length:
        raise ModelFileError(
            f"{path}: truncated (its header needs {8 + header_length} bytes, the file has {size})."
        )
    try:
        header = json.loads(header_bytes)
        data_end = max(
            (entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
            default=0,
        )
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ModelFileError(f"{path}: not a safetensors file (bad header).") from error
    if 8 + header_length + data_end > size:
        raise ModelFileError(
            f"{path}: truncated (its tensors need {8 + header_length + data_end} bytes, "
            f"the file has {size})."
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a valid safetensors file ({error}).") from error


def _some(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
