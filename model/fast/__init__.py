"""The fast sampler: the same distributions as the reference, computing only what changes.

Generating pixel p re-runs the whole network in the tutorial's procedure, although almost
everything it computes was already computed for pixel p-1 and cannot have changed. Following
Ramachandran et al. 2017 ("Fast Generation for Convolutional Autoregressive Models"), the
gated model keeps per layer what can no longer change and computes only the new position:

- the vertical stack's rows, computed once per row when the row is finished (its output at
  row r depends only on image rows <= r), which give the horizontal stack its row link;
- the horizontal stack's values of the current row, one new column per layer and pixel.

Known pixels are never sampled; a fully known prefix costs one batched pass. The classic
PixelCNN has no such split, so each of its pixels is computed on a window that just covers
its receptive field.

On the CPU the per-pixel work is a few dozen tiny matrix products: compiled kernels (Numba,
model/fast/kernels.py) sample a whole row per call and compute the vertical stack of a finished
row in another, each on all cores (the candidates dealt out), and without Numba NumPy does
it (its call overhead is several times lower than PyTorch's); elsewhere the same code runs
on torch tensors on the device. Weights are taken from the model with their masks applied,
so both samplers evaluate the same function.

The package, by job: `arrays` (NumPy or torch), `weights` (laid out for stepping),
`stepper` (the incremental evaluation), `rows` (the stream of samples and its threads'
schedule), `threads` (cores, shares, BLAS), `windowed` (the classic model), `kernels` (the
compiled row and vertical-stack kernels, whose products are `tiles`); here, the entry point
and the warm-up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import torch

from ..base import ImageModel
from ..gated import GatedPixelCNN
from ..pixelcnn import PixelCNN
from ..task import Completion, PixelSample, SamplingTask, on_device, pick_device
from . import kernels
from .rows import _gated_steps
from .stepper import GatedStepper
from .weights import prepared_weights
from .windowed import _windowed_steps


def _by_class(task: SamplingTask, steps_of) -> Iterator[PixelSample]:
    """The task's samples, from `steps_of(task)`, or where candidates differ in class (the
    gated stepper's state takes one class) from one part per class, merged: pixel-channel
    by pixel-channel, candidate by candidate, the order of a single run."""
    parts: dict = {}
    for k, label in enumerate(task.class_labels):
        parts.setdefault(label, []).append(k)
    if len(parts) == 1:
        yield from steps_of(task)
        return
    members = list(parts.values())
    streams = [steps_of(task.part(candidates)) for candidates in members]
    images, channels = task.images, task.config.channels
    pixel_channel: list = [None] * task.candidates
    try:
        for row, col in task.unknown:
            for channel in range(channels):
                for candidates, stream in zip(members, streams, strict=True):
                    for _ in candidates:
                        sample = next(stream)
                        k = candidates[sample.candidate]
                        pixel_channel[k] = sample._replace(candidate=k)
                        images[k, channel, row, col] = sample.value
                yield from pixel_channel
    finally:
        for stream in streams:
            stream.close()


BACKENDS = ("compiled", "numpy", "torch")


# How many warm-ups are loading or compiling the kernels now (see default_backend).
_warm_ups = 0
_warm_ups_lock = threading.Lock()


@contextlib.contextmanager
def _warming_up():
    global _warm_ups
    with _warm_ups_lock:
        _warm_ups += 1
    try:
        yield
    finally:
        with _warm_ups_lock:
            _warm_ups -= 1


def warm_up(model: ImageModel, device=None) -> None:
    """Compile the CPU kernels that completions with `model` on `device` (by default the
    CPU: the kernels serve only there) will use, now, so that the first completion does not
    wait for them.
    With Numba's on-disk cache filled this takes a fraction of a second; the first time
    (a new installation or build) it compiles, for seconds. Completions started meanwhile
    run on NumPy (see default_backend)."""
    device = pick_device(device or "cpu")
    if not isinstance(model, GatedPixelCNN) or not _kernels_serve(device):
        return
    cfg = model.config
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    # One unknown pixel (the run kernel) below a finished row (the vertical stack's kernel),
    # wherever the image allows.
    known = np.ones((cfg.height, cfg.width), bool)
    known[min(1, cfg.height - 1), min(1, cfg.width - 1)] = False
    weights = prepared_weights(model, "compiled", device)
    # Two candidates (the helper threads too) of one class: a single stepper serves them.
    task = SamplingTask(model, image, known, candidates=2, seed=0, class_label=None)
    with _warming_up():
        for _ in _gated_steps(GatedStepper(weights, task, share=False), task):
            pass


def _kernels_serve(device: torch.device) -> bool:
    """Whether the compiled kernels are the gated model's backend on `device` (once warm)."""
    return device.type == "cpu" and kernels.AVAILABLE


def default_backend(device: torch.device) -> str:
    """The gated model's fastest backend on `device`, ready now.

    While a warm-up (on another thread: the app starts one when a model loads) is still
    loading or compiling the kernels, that is NumPy: at a new installation's first start
    the compilation takes 10-20 s, in which a completion would only wait, whereas NumPy
    completes a picture in a fraction of a second, from the same distributions."""
    if device.type != "cpu":
        return "torch"
    return "compiled" if _kernels_serve(device) and not _warm_ups else "numpy"


def fast_completion(model: ImageModel, image, known=None, *, device=None,
                    backend: str | None = None, **options) -> Completion:
    """Same inputs, same stream and the same samples as `reference_completion`, faster.

    `backend` chooses how the gated model's steps are computed: "compiled" (Numba kernels
    on the CPU), "numpy", or "torch" (any device); by default the fastest for the device.
    """
    task = SamplingTask(model, image, known, **options)
    device = pick_device(device)
    model = on_device(model, device)
    if isinstance(model, GatedPixelCNN):
        backend = backend or default_backend(device)
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
        if backend == "compiled" and not kernels.AVAILABLE:
            raise RuntimeError("The compiled backend needs Numba, which is not installed.")
        weights = prepared_weights(model, backend, device)
        steps = _by_class(task, lambda part: _gated_steps(GatedStepper(weights, part), part))
    elif isinstance(model, PixelCNN):
        steps = _windowed_steps(model, task, device)
    else:
        raise TypeError(f"No fast sampler for {type(model).__name__}.")
    return Completion(task, steps, device, "fast")
