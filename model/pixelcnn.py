"""The classic PixelCNN of the tutorial (van den Oord et al. 2016, "Pixel Recurrent
Neural Networks", section 3.4): a 7x7 mask-A convolution to 2h channels, residual blocks
of mask-B convolutions through an h-channel bottleneck, and 1x1 mask-B output layers.

Stacked square masked kernels never see a triangle of pixels above and to the right:
the "blind spot" that the gated model removes. It is kept as the teaching reference.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ImageModel, add_class_bias, class_embedding
from .config import ModelConfig
from .masked import MaskedConv2d, output_head


class ResidualBlock(nn.Module):
    """The paper's block (figure 5): ReLU, 1x1 from 2h channels down to h, ReLU, kxk on h,
    ReLU, 1x1 back up to 2h (all mask B), added back onto the input. The bottleneck puts
    the costly kxk convolution on half the channels."""

    def __init__(self, channels: int, kernel_size: int, colours: int):
        super().__init__()
        inner = channels // 2
        self.body = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, inner, 1, "B", colours),
            nn.ReLU(),
            MaskedConv2d(inner, inner, kernel_size, "B", colours),
            nn.ReLU(),
            MaskedConv2d(inner, channels, 1, "B", colours),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelCNN(ImageModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c, h = config.channels, config.hidden_channels
        self.input_conv = MaskedConv2d(c, h, config.first_kernel_size, "A", c)
        self.class_bias = class_embedding(config.num_classes, h)
        self.blocks = nn.Sequential(
            *(ResidualBlock(h, config.kernel_size, c) for _ in range(config.layers))
        )
        self.head = output_head(h, config.outputs_per_channel, c)

    def features(self, x: torch.Tensor, class_index) -> torch.Tensor:
        h = add_class_bias(self.input_conv(x), self.class_bias, class_index)
        return self.head(self.blocks(h))

    def receptive_radius(self) -> int:
        """How many rows up (and columns either way) one output can reach at most."""
        c = self.config
        return c.first_kernel_size // 2 + c.layers * (c.kernel_size // 2)
