"""The configuration that rebuilds a model: stored as JSON beside its weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ARCHITECTURES = ("pixelcnn", "gated")
DISTRIBUTIONS = ("bernoulli", "categorical")


class ConfigError(ValueError):
    """A model configuration that is incomplete, mistyped or out of range."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "gated"  # "pixelcnn" (classic, has a blind spot) or "gated"
    channels: int = 1  # colour channels C: 1 (gray/ink) or 3 (RGB)
    distribution: str = "bernoulli"  # one logit per value, or a softmax over `levels`
    levels: int = 2  # intensity levels K per channel (2 for bernoulli)
    height: int = 28
    width: int = 28
    layers: int = 8  # residual blocks after the mask-A conv (pixelcnn), gated layers (gated)
    hidden_channels: int = 64
    first_kernel_size: int = 7  # the mask-A layer
    kernel_size: int = 3  # every later masked layer
    num_classes: int = 0  # 0: unconditional; else labels 0..num_classes-1 plus "no class"

    def __post_init__(self):
        problems = _problems(self)
        if problems:
            raise ConfigError("Invalid model config: " + "; ".join(problems) + ".")

    @property
    def outputs_per_channel(self) -> int:
        return 1 if self.distribution == "bernoulli" else self.levels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"Model config must be a JSON object, not {type(data).__name__}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = sorted(set(fields) - set(data))
        if missing:
            raise ConfigError(f"Model config is missing key(s): {', '.join(missing)}.")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"Model config has unknown key(s): {', '.join(unknown)}.")
        for name, field in fields.items():
            expected = int if field.type == "int" else str
            value = data[name]
            # bool is an int subclass in Python; a config saying `true` is still wrong.
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(
                    f"Model config key {name!r} must be {expected.__name__}, "
                    f"not {type(value).__name__} ({value!r})."
                )
        return cls(**data)


def _problems(c: ModelConfig) -> list[str]:
    problems = []
    if c.architecture not in ARCHITECTURES:
        problems.append(f"architecture {c.architecture!r} is not one of {ARCHITECTURES}")
    if c.channels not in (1, 3):
        problems.append(f"channels must be 1 or 3, not {c.channels}")
    if c.distribution not in DISTRIBUTIONS:
        problems.append(f"distribution {c.distribution!r} is not one of {DISTRIBUTIONS}")
    if c.distribution == "bernoulli" and c.levels != 2:
        problems.append(f"a bernoulli model has 2 levels, not {c.levels}")
    if not 2 <= c.levels <= 256:
        problems.append(f"levels must be within 2..256, not {c.levels}")
    if c.height < 1 or c.width < 1:
        problems.append(f"image size {c.height}x{c.width} is empty")
    if c.layers < 1:
        problems.append(f"layers must be at least 1, not {c.layers}")
    if c.hidden_channels < 1 or c.hidden_channels % c.channels:
        problems.append(
            f"hidden_channels ({c.hidden_channels}) must be a positive multiple of channels"
        )
    elif c.architecture == "pixelcnn" and c.hidden_channels % (2 * c.channels):
        problems.append(  # the residual blocks' bottleneck is half of them
            f"hidden_channels ({c.hidden_channels}) of the classic PixelCNN must be a multiple "
            f"of {2 * c.channels}"
        )
    for name in ("first_kernel_size", "kernel_size"):
        k = getattr(c, name)
        if k < 1 or k % 2 == 0:
            problems.append(f"{name} must be a positive odd number, not {k}")
    if c.num_classes < 0:
        problems.append(f"num_classes must be 0 or more, not {c.num_classes}")
    return problems
