"""What a model can see: the receptive field of each output pixel, found by back-propagation,
and the masks its kernels really carry.

Nothing here is drawn from a formula for the architecture: the field comes from gradients
through the model's own layers, and the kernels are read from its mask buffers and weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .masked import MaskedConv2d

# What an input pixel is to one output pixel (see `field_map`).
NOT_YET, SEEN, BLIND_SPOT, OUT_OF_REACH, CURRENT = range(5)


class ReceptiveField:
    """Which input pixels the logits at each position depend on, cached per position.

    `visible(row, col)` back-propagates from the logits of the first colour channel at
    (row, col) to the input image: a pixel is visible when its gradient is not zero.
    ReLUs are pointwise: they can switch a path off for one input but never open one, so they
    are bypassed here, and what remains is the field that the layers, weights and masks give,
    not the one of a particular image on which some ReLU happens to be off.
    """

    def __init__(self, model: nn.Module, trials: int = 2):
        cfg = model.config
        self.model = model  # kept to tell whose field this is (compare with `is`)
        self.shape = (cfg.height, cfg.width)
        self._outputs = cfg.outputs_per_channel
        self._probe = copy.deepcopy(model).to("cpu", torch.float64).eval()
        for name, module in list(self._probe.named_modules()):
            if isinstance(module, nn.ReLU):
                parent, _, child = name.rpartition(".")
                setattr(self._probe.get_submodule(parent), child, nn.Identity())
        self._probe.requires_grad_(False)
        generator = torch.Generator().manual_seed(0)
        # Random images in the model's input range (it scales values to [0, 1]); two of them
        # so that a gate that happens to saturate at one cannot hide a path.
        self._inputs = torch.rand(trials, cfg.channels, cfg.height, cfg.width,
                                  generator=generator, dtype=torch.float64)
        # A random mix of the output logits, so that no two logits can cancel.
        self._mix = torch.randn(self._outputs, generator=generator, dtype=torch.float64)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def is_cached(self, row: int, col: int) -> bool:
        """Whether `visible(row, col)` is known already (and so costs nothing)."""
        return (row, col) in self._cache

    def visible(self, row: int, col: int) -> np.ndarray:
        """(H, W) bool: the input pixels whose values reach the logits at (row, col)."""
        height, width = self.shape
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"Pixel {(row, col)} lies outside the {height}x{width} image.")
        key = (row, col)
        if key not in self._cache:
            x = self._inputs.clone().requires_grad_(True)
            logits = self._probe.features(x, None)  # (trials, C * outputs, H, W)
            picked = logits[:, :self._outputs, row, col]  # the first colour's logits
            (picked * self._mix).sum().backward()
            self._cache[key] = (x.grad.abs().sum(dim=(0, 1)) > 0).numpy()
        return self._cache[key]

    def field_map(self, row: int, col: int) -> np.ndarray:
        """(H, W) codes for every pixel seen from (row, col); see `field_map`."""
        return field_map(self.visible(row, col), row, col)


def field_map(visible: np.ndarray, row: int, col: int) -> np.ndarray:
    """Sort every pixel into CURRENT, SEEN, NOT_YET (unseen, at or after it in raster order),
    BLIND_SPOT (earlier, unseen, but inside the rectangle that the seen pixels span: the
    classic PixelCNN's triangle above and to the right) and OUT_OF_REACH (earlier, unseen,
    beyond that rectangle). A later pixel that is seen (a broken mask) is shown as SEEN."""
    height, width = visible.shape
    order = np.arange(height * width).reshape(height, width)
    earlier = order < row * width + col
    codes = np.full((height, width), NOT_YET)
    codes[earlier] = OUT_OF_REACH
    seen = visible & earlier
    if seen.any():
        rows, cols = np.nonzero(seen)
        box = np.zeros_like(seen)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        codes[earlier & box] = BLIND_SPOT
    codes[visible] = SEEN
    codes[row, col] = CURRENT
    return codes


@dataclass(frozen=True)
class Kernel:
    """One convolution kernel as the model holds it, placed in a square frame around the
    output pixel (frame centre): `taps` is 1 where a weight is used, 0 where the mask zeroes
    it and NaN outside the kernel's shape."""

    title: str
    taps: np.ndarray
    note: str


def kernels(model: nn.Module) -> list[Kernel]:
    """The kernels that make the model autoregressive: mask A (the first layer) and mask B
    (the first later layer with a spatial kernel); for the gated model the vertical-stack
    kernels (unmasked: their shape stops at the pixel's row) and the horizontal-stack masks."""
    if hasattr(model, "input_conv"):  # the classic PixelCNN
        later = [m for m in model.blocks.modules() if isinstance(m, MaskedConv2d)]
        widest = max(later, key=lambda m: m.mask.shape[-2] * m.mask.shape[-1])
        return [_masked("Mask A: first layer", model.input_conv,
                        "The pixel itself is hidden."),
                _masked("Mask B: residual blocks", widest,
                        "The pixel's own features, which hold nothing of its value.")]
    found = []
    for index, layer in enumerate(model.layers[:2]):
        found.append(_vertical(f"Vertical, layer {index + 1}", layer, first=index == 0))
        note = ("Row only; the pixel itself is hidden." if layer.horizontal.mask_type == "A"
                else "Row only; the pixel's own features.")
        found.append(_masked(f"Horizontal, layer {index + 1}: mask "
                             f"{layer.horizontal.mask_type}", layer.horizontal, note))
    return found


def _frame(size: int) -> np.ndarray:
    return np.full((size, size), np.nan)


def _masked(title: str, conv: MaskedConv2d, note: str) -> Kernel:
    # Output channel 0 from input channel 0 (for colour models: R from R).
    mask = conv.mask[0, 0].cpu().numpy()
    kh, kw = mask.shape
    ci, cj = conv.centre
    size = 2 * max(ci, kh - 1 - ci, cj, kw - 1 - cj) + 1
    taps = _frame(size)
    top, left = size // 2 - ci, size // 2 - cj
    taps[top:top + kh, left:left + kw] = mask
    return Kernel(f"{title} ({kh}x{kw})", taps, note)


def _vertical(title: str, layer: nn.Module, first: bool) -> Kernel:
    _, _, kh, kw = layer.vertical.weight.shape
    left, _, top, _ = layer.vertical_padding  # F.pad order: left, right, top, bottom
    size = max(kw, 2 * top + 1)
    taps = _frame(size)
    # Padding `top` rows above and none below: output row r sees rows r-top..r.
    row0, col0 = size // 2 - top, size // 2 - left
    taps[row0:row0 + kh, col0:col0 + kw] = 1.0
    note = ("No mask: it stops at the pixel's row and reaches the horizontal stack shifted "
            "down one row, so only rows above count." if first else
            "The same in every later layer: rows above, shifted down one row.")
    return Kernel(f"{title} ({kh}x{kw})", taps, note)
