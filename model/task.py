"""What every sampler shares: the task (inputs checked once, the images being completed,
each candidate's class and stream of uniforms), the samples a completion streams, and the
completion itself. It imports no sampler, so both samplers build on it.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from .base import ImageModel
from .distributions import draw, probabilities
from .memory import check_candidates_fit
from .posterior import ClassChoice, choose_classes
from .seeds import new_seed

_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_copies_lock = threading.Lock()


def on_device(model: ImageModel, device: torch.device) -> ImageModel:
    """The model itself where it already lives on `device`, else its copy there, made once
    and kept for as long as the model lives. A sampler never moves the caller's model
    (`Module.to` moves in place): the app's GUI thread scores with the same model while its
    worker thread samples, perhaps on a GPU."""
    device = torch.device(device)
    current = next(model.parameters()).device
    if current.type == device.type and (device.index is None or current == device):
        return model
    with _copies_lock:
        copies = _copies.setdefault(model, {})
        if device not in copies:
            copies[device] = copy.deepcopy(model).to(device).eval()
        return copies[device]


class PixelSample(NamedTuple):
    candidate: int
    row: int
    col: int
    channel: int
    value: int
    probs: np.ndarray  # the (temperature-adjusted) distribution the value was drawn from


def label_tensor(class_labels, device) -> torch.Tensor | None:
    """Per-image classes (None: no class) as the model takes them (-1: no class); None
    when no image has a class."""
    if all(label is None for label in class_labels):
        return None
    return torch.tensor([-1 if label is None else label for label in class_labels],
                        dtype=torch.long, device=device)


# Every command's --device choices; "auto" is pick_device's own choice.
DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA if available, then Apple MPS, else the CPU ("auto" or None); or the device
    asked for."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested, but no CUDA device is available.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("MPS was requested, but Apple's MPS is not available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class SamplingTask:
    """The inputs every sampler shares, checked once, and the images being completed."""

    def __init__(self, model: ImageModel, image, known=None, *, candidates: int = 1,
                 temperature: float = 1.0, seed: int | None = None, class_label="auto"):
        c = model.config
        image = np.asarray(image)
        if image.ndim == 2 and c.channels == 1:
            image = image[None]
        if image.shape != (c.channels, c.height, c.width):
            raise ValueError(
                f"Image of shape {'x'.join(map(str, image.shape))} does not fit a model for "
                f"{c.channels}x{c.height}x{c.width} images."
            )
        known = np.ones((c.height, c.width), bool) if known is None else np.asarray(known, bool)
        if known.shape != (c.height, c.width):
            raise ValueError(f"Known-pixel mask of shape {known.shape} does not fit a "
                             f"{c.height}x{c.width} image.")
        values = np.where(known[None], image, 0)
        if values.min() < 0 or values.max() >= c.levels:
            raise ValueError(f"Known pixel values must lie within 0..{c.levels - 1}.")
        if candidates < 1:
            raise ValueError(f"Number of candidates must be at least 1, not {candidates}.")
        check_candidates_fit(c, candidates)
        if not temperature >= 0:
            raise ValueError(f"Temperature must be 0 or more, not {temperature}.")
        self.config = c
        self.known = known
        self.candidates = candidates
        self.temperature = float(temperature)
        self.seed = new_seed() if seed is None else int(seed)
        # Each candidate's class: see model.posterior ("auto" reads the known pixels).
        self.classes = choose_classes(model, values, known, class_label, candidates, self.seed)
        self.images = np.repeat(values[None].astype(np.uint8), candidates, axis=0)
        # One independent stream of uniforms per candidate, made on the CPU from the seed:
        # candidate k is the same whatever the device or the number of candidates.
        self.uniforms = np.stack([
            np.random.default_rng([self.seed, k]).random((c.channels, c.height, c.width))
            for k in range(candidates)
        ])
        rows, cols = np.nonzero(~known)
        self.unknown = list(zip(rows.tolist(), cols.tolist(), strict=False))  # raster order

    @property
    def class_labels(self) -> tuple:
        """Per candidate, the class it is conditioned on (None: no class)."""
        return self.classes.labels

    def labels(self, device) -> torch.Tensor | None:
        """The candidates' classes as the model takes them (-1: no class), or None."""
        return label_tensor(self.class_labels, device)

    def part(self, candidates: list[int]) -> SamplingTask:
        """The task of some of the candidates only: the same pixels, seed and settings, and
        each candidate with its own class and stream of uniforms."""
        part = copy.copy(self)
        part.candidates = len(candidates)
        part.classes = ClassChoice(tuple(self.class_labels[k] for k in candidates),
                                   self.classes.policy, self.classes.posterior)
        part.images = self.images[candidates].copy()
        part.uniforms = self.uniforms[candidates]
        return part

    def sample(self, row: int, col: int, channel: int, logits: np.ndarray) -> list[PixelSample]:
        """Draw one value per candidate from that pixel-channel's logits and write it."""
        probs = probabilities(logits, self.config.distribution, self.temperature)
        values = draw(probs, self.uniforms[:, channel, row, col])
        self.images[:, channel, row, col] = values
        return [PixelSample(k, row, col, channel, value, p)
                for k, (value, p) in enumerate(zip(values.tolist(), probs, strict=True))]


class Completion:
    """An iterator over the samples of one completion; `.images` fills in as it runs."""

    def __init__(self, task: SamplingTask, steps: Iterator[PixelSample], device: torch.device,
                 sampler: str):
        self.task = task
        self.device = device
        self.sampler = sampler
        self._steps = steps

    @property
    def images(self) -> np.ndarray:
        """(candidates, C, H, W) uint8: known pixels, then every value sampled so far."""
        return self.task.images

    @property
    def seed(self) -> int:
        return self.task.seed

    @property
    def total(self) -> int:
        """How many samples the whole completion yields."""
        return len(self.task.unknown) * self.task.config.channels * self.task.candidates

    def __iter__(self) -> Completion:
        return self

    def __next__(self) -> PixelSample:
        return next(self._steps)

    def close(self) -> None:
        self._steps.close()

    def run(self) -> np.ndarray:
        """Sample everything that is left and return the completed images."""
        for _ in self:
            pass
        return self.images
