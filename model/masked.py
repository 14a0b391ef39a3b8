"""Masked 2-D convolution: the one idea that makes a convolution autoregressive.

A position may look at every row above it and at the pixels to its left in its own row.
At the position itself the colour rule of PixelRNN/PixelCNN applies: channels are split
into C colour groups (R, G, B) and output group c sees input groups < c under mask "A"
(used once, on the image) and <= c under mask "B" (every later layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_groups(channels: int, colours: int) -> torch.Tensor:
    """Colour group of each of `channels` channels: contiguous blocks, R first."""
    if channels % colours:
        raise ValueError(f"{channels} channels cannot be split into {colours} colour groups.")
    return torch.arange(channels) // (channels // colours)


def build_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    kernel_size: tuple[int, int],
    mask_type: str,
    centre: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A 0/1 weight mask of shape (out, in, kh, kw) for the given colour groups."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"Mask type must be 'A' or 'B', not {mask_type!r}.")
    kh, kw = kernel_size
    ci, cj = centre if centre is not None else (kh // 2, kw // 2)
    mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)
    mask[:, :, :ci, :] = 1  # every row above
    mask[:, :, ci, :cj] = 1  # the pixels to the left in this row
    # At the centre, output group c sees input groups < c (A) or <= c (B).
    later = out_groups[:, None] > in_groups[None, :]
    same = out_groups[:, None] == in_groups[None, :]
    mask[:, :, ci, cj] = (later | same).float() if mask_type == "B" else later.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weights are multiplied by a fixed causal mask.

    The output keeps the input's height and width. `centre` places the current pixel inside
    the kernel (default: its middle); the horizontal stack of the gated model puts it at the
    right end of a 1 x k kernel so that no weight is wasted on the future.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str,
        colours: int = 1,
        *,
        out_groups: torch.Tensor | None = None,
        centre: tuple[int, int] | None = None,
        bias: bool = True,
    ):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_channels, out_channels, (kh, kw), bias=bias)
        ci, cj = centre if centre is not None else (kh // 2, kw // 2)
        if not (0 <= ci < kh and 0 <= cj < kw):
            raise ValueError(f"Centre {(ci, cj)} lies outside a {kh}x{kw} kernel.")
        if centre is None and (kh % 2 == 0 or kw % 2 == 0):
            raise ValueError(f"Kernel size must be odd, not {kh}x{kw}.")
        self.mask_type = mask_type
        self.centre = (ci, cj)
        # F.pad order: left, right, top, bottom.
        self.padding_lrtb = (cj, kw - 1 - cj, ci, kh - 1 - ci)
        if out_groups is None:
            out_groups = channel_groups(out_channels, colours)
        in_groups = channel_groups(in_channels, colours)
        self.register_buffer(
            "mask", build_mask(out_groups, in_groups, (kh, kw), mask_type, (ci, cj)),
            persistent=False,
        )

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.padding_lrtb), self.masked_weight(), self.bias)


def output_head(width: int, outputs_per_channel: int, colours: int) -> nn.Sequential:
    """ReLU, 1x1, ReLU, 1x1 (mask B): features to C * outputs logits, colour groups kept."""
    return nn.Sequential(
        nn.ReLU(),
        MaskedConv2d(width, width, 1, "B", colours),
        nn.ReLU(),
        MaskedConv2d(width, colours * outputs_per_channel, 1, "B", colours),
    )
