"""Raster-order sampling: the reference sampler of the tutorial, and `complete`, which starts
a completion with either sampler (the fast one is model/fast/; what both share is
model/task.py).

A sampler takes a partially known image and fills its unknown pixels one at a time, left to
right and top to bottom (and within a pixel R, then G, then B), each value drawn from the
model's distribution given everything before it. It streams: iterating a `Completion`
yields one `PixelSample` per sampled value, so a GUI can animate it and any caller can stop
between two pixels (stopping the iteration stops the work).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .base import ImageModel
from .devices import completion_device
from .fast import fast_completion
from .task import Completion, PixelSample, SamplingTask, on_device, pick_device


def reference_completion(model: ImageModel, image, known=None, *, device=None,
                         **options) -> Completion:
    """The tutorial's procedure exactly: for every unknown pixel and channel in raster
    order, run the whole network on the current images and sample that position."""
    task = SamplingTask(model, image, known, **options)
    device = pick_device(device)
    model = on_device(model, device)
    labels = task.labels(device)
    distribution = task.config.distribution

    @torch.inference_mode()
    def logits_at(row: int, col: int, channel: int) -> np.ndarray:
        x = torch.from_numpy(task.images).to(device)
        logits = model(x, labels)
        if distribution == "bernoulli":
            return logits[:, channel, row, col].double().cpu().numpy()
        return logits[:, channel, :, row, col].double().cpu().numpy()

    def steps() -> Iterator[PixelSample]:
        for row, col in task.unknown:
            for channel in range(task.config.channels):
                yield from task.sample(row, col, channel, logits_at(row, col, channel))

    return Completion(task, steps(), device, "reference")


SAMPLERS = ("fast", "reference")


def complete(model: ImageModel, image, known=None, *, sampler: str = "fast", device=None,
             **options) -> Completion:
    """Start a completion with the named sampler: "fast" (the default) or "reference", on
    `device`: by default ("auto") the one measured fastest for this model on this machine."""
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    device = completion_device(model, device)
    if sampler == "reference":
        return reference_completion(model, image, known, device=device, **options)
    return fast_completion(model, image, known, device=device, **options)
