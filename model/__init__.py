"""PixelCNN models and samplers in plain PyTorch (this package never imports Qt).

Names are imported on first use: `model.registry`, `model.card` and `model.config` load
without PyTorch, so the app can show its window before torch is imported.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "ConfigError": "config", "ModelConfig": "config",
    "nll": "distributions", "nll_nats": "distributions",
    "GatedPixelCNN": "gated",
    "ModelFileError": "card", "read_card": "card",
    "build_model": "io", "load_model": "io", "save_model": "io",
    "MaskedConv2d": "masked", "build_mask": "masked",
    "PixelCNN": "pixelcnn",
    "Completion": "task", "PixelSample": "task", "complete": "sampling",
    "pick_device": "task", "reference_completion": "sampling",
    "completion_device": "devices",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
