"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders", section 2.2 and figure 2).

Two stacks remove the blind spot of stacked masked kernels:
- the vertical stack sees whole rows: its output at row r depends on image rows <= r;
- the horizontal stack sees the current row up to the current pixel (mask A on the
  image, mask B after) and, through a 1x1 link, the vertical stack *shifted down one row*,
  so everything it receives from the vertical stack lies strictly above.
Each layer gates with tanh(a) * sigmoid(b); the horizontal stack is residual and every
layer feeds a skip sum that the 1x1 mask-B head turns into logits. A class adds a learned
bias to each gate (section 2.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ImageModel, add_class_bias, class_embedding
from .config import ModelConfig
from .masked import MaskedConv2d, channel_groups, output_head


def gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def gate_through_exp(x: torch.Tensor) -> torch.Tensor:
    """`gate` written with exp alone: the same values up to float32 rounding, and 2.4x faster
    in the CPU code torch.compile writes (measured on a layer's gates), where tanh is costly.
    Compiled inference only (`GatedPixelCNN.for_compiled_inference`): its gradient overflows
    for large inputs, and eager PyTorch runs its extra operations slower."""
    a, b = x.float().chunk(2, dim=1)
    return ((1 - 2 / (torch.exp(2 * a) + 1)) / (1 + torch.exp(-b))).to(x.dtype)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Row r of the result is row r-1 of x (row 0 is zero): only rows strictly above."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


class GatedLayer(nn.Module):
    gate = staticmethod(gate)

    def __init__(self, in_channels: int, width: int, kernel_size: int, colours: int,
                 first: bool, num_classes: int):
        super().__init__()
        k = kernel_size
        self.vertical_rows = k // 2 + 1  # this row and k//2 above
        self.vertical = nn.Conv2d(in_channels, 2 * width, (self.vertical_rows, k))
        self.vertical_padding = (k // 2, k // 2, self.vertical_rows - 1, 0)
        # Gate halves a and b carry the same colour groups, so gating keeps them apart.
        groups = channel_groups(width, colours)
        self.horizontal = MaskedConv2d(
            in_channels, 2 * width, (1, k // 2 + 1), "A" if first else "B", colours,
            out_groups=torch.cat([groups, groups]), centre=(0, k // 2),
        )
        self.link = nn.Conv2d(2 * width, 2 * width, 1)
        # The first layer's input is the image itself: adding it back would leak the pixel.
        self.residual = None if first else MaskedConv2d(width, width, 1, "B", colours)
        self.skip = MaskedConv2d(width, width, 1, "B", colours)
        self.class_bias_v = class_embedding(num_classes, 2 * width)
        self.class_bias_h = class_embedding(num_classes, 2 * width)

    def forward(self, v, h, class_index):
        v_pre = self.vertical(F.pad(v, self.vertical_padding))
        v_pre = add_class_bias(v_pre, self.class_bias_v, class_index)
        h_pre = self.horizontal(h) + self.link(shift_down(v_pre))
        h_gated = self.gate(add_class_bias(h_pre, self.class_bias_h, class_index))
        h_out = h_gated if self.residual is None else h + self.residual(h_gated)
        return self.gate(v_pre), h_out, self.skip(h_gated)


class GatedPixelCNN(ImageModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c, w = config.channels, config.hidden_channels
        self.layers = nn.ModuleList(
            GatedLayer(
                c if i == 0 else w, w,
                config.first_kernel_size if i == 0 else config.kernel_size,
                c, first=i == 0, num_classes=config.num_classes,
            )
            for i in range(config.layers)
        )
        self.head = output_head(w, config.outputs_per_channel, c)

    def for_compiled_inference(self) -> GatedPixelCNN:
        inference = super().for_compiled_inference()
        for layer in inference.layers:
            layer.gate = gate_through_exp
        return inference

    def features(self, x: torch.Tensor, class_index) -> torch.Tensor:
        v, h, skip = x, x, 0
        for layer in self.layers:
            v, h, s = layer(v, h, class_index)
            skip = skip + s
        return self.head(skip)
