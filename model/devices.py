"""Which device completes a model's pictures fastest on this machine, found by measuring.

A GPU is not the fast choice by default here: the fast sampler's compiled CPU kernels do one
pixel of a small PixelCNN in tens of microseconds with every layer's state in cache, while
the torch path on a GPU pays a few kernel launches per layer for every pixel. Which one wins
depends on the model and the machine, so "auto" times a completion of a few hundred pixels
on each device there is, once per model, and keeps the faster (`completion_device`). Batched
work (training, evaluation) is another matter: `pick_device` prefers an accelerator there.

The choice is remembered per model object for the process; the app also keeps it in its
settings (`DeviceChoice.to_json`) so that a model is measured once per machine.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import ImageModel
from .fast import fast_completion, warm_up
from .task import pick_device

MEASURED_PIXELS = 300  # enough to amortise a device's start-up, quick on the slowest device


def cpu_has_fast_bf16() -> bool:
    # Without AVX-512 (e.g. AVX2 only) oneDNN emulates bf16: measured 2.6x slower than fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def available_devices() -> list[str]:
    """The devices completions can run on here, the CPU first."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def machine_signature(devices: list[str] | None = None) -> str:
    """Names this machine's devices, so that a remembered choice is measured again when they
    change (a new GPU, or the same settings on another machine)."""
    names = []
    for device in devices or available_devices():
        if device == "cuda":
            names.append(f"cuda:{torch.cuda.get_device_name(0)}")
        else:
            names.append(device)
    return "|".join(names)


@dataclass(frozen=True)
class DeviceChoice:
    """The device completions run on, and what it was chosen by."""

    device: str  # "cpu", "cuda" or "mps"
    # Measured milliseconds per pixel by device (inf: failed there); empty when there was
    # nothing to choose from.
    ms_per_pixel: dict[str, float] = field(default_factory=dict)

    def reason(self) -> str:
        """Why this device, for the status bar: "the only device", or the measurements."""
        if not self.ms_per_pixel:
            return "the only device"
        times = ", ".join(
            f"{device.upper()} {ms:.3g} ms/pixel" if math.isfinite(ms) else
            f"{device.upper()} failed" for device, ms in self.ms_per_pixel.items())
        return f"fastest measured ({times})"

    def to_json(self) -> str:
        return json.dumps({"device": self.device, "ms_per_pixel": {
            device: ms if math.isfinite(ms) else None for device, ms in self.ms_per_pixel.items()}})

    @classmethod
    def from_json(cls, text: str, devices: list[str] | None = None) -> DeviceChoice | None:
        """The choice saved by `to_json`; None if unreadable or its device is not here."""
        try:
            data = json.loads(text)
            device = data["device"]
            times = {str(d): math.inf if ms is None else float(ms)
                     for d, ms in data["ms_per_pixel"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if device not in (devices or available_devices()):
            return None
        return cls(device, times)


def seconds_per_pixel(model: ImageModel, device: str, pixels: int = MEASURED_PIXELS) -> float:
    """Time the fast sampler completing the bottom rows (about `pixels` pixels) of a blank
    picture on `device`, after an untimed one-row run that loads its kernels or starts the
    device. The caller's model is not moved (samplers work on a copy per device)."""
    cfg = model.config
    rows = min(cfg.height, max(1, math.ceil(pixels / cfg.width)))
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)

    def run(unknown_rows: int) -> None:
        known = np.ones((cfg.height, cfg.width), bool)
        known[cfg.height - unknown_rows:] = False
        fast_completion(model, image, known, device=device, seed=0, class_label=None).run()

    warm_up(model, device)
    run(1)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(rows)
    return (time.perf_counter() - start) / (rows * cfg.width)


def choose(model: ImageModel, devices: list[str] | None = None,
           measure: Callable[[ImageModel, str], float] = seconds_per_pixel) -> DeviceChoice:
    """Measure `model` on every device (a device that fails counts as infinitely slow) and
    choose the fastest; with one device, that one, unmeasured."""
    devices = devices or available_devices()
    if len(devices) == 1:
        return DeviceChoice(devices[0])
    times = {}
    for device in devices:
        try:
            times[device] = measure(model, device) * 1000
        except (RuntimeError, MemoryError):  # a device error: that device is not the choice
            times[device] = math.inf
    fastest = min(devices, key=lambda device: times[device])
    return DeviceChoice(fastest if math.isfinite(times[fastest]) else "cpu", times)


_choices: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_choosing = threading.Lock()  # one measurement at a time: two would time each other


def remember(model: ImageModel, choice: DeviceChoice) -> None:
    """Use `choice` for `model` from now on (the app passes in one saved in its settings)."""
    with _choosing:
        _choices[model] = choice


def choice_for(model: ImageModel) -> DeviceChoice:
    """The device choice for `model`: remembered, or measured now (and remembered)."""
    with _choosing:
        if model not in _choices:
            _choices[model] = choose(model)
        return _choices[model]


def completion_device(model: ImageModel, requested: str | torch.device | None = None
                      ) -> torch.device:
    """The device to complete on: the one requested (an error if it is not there), or for
    None or "auto" the fastest measured for this model."""
    if requested is not None and str(requested) != "auto":
        return pick_device(str(requested))
    return torch.device(choice_for(model).device)
