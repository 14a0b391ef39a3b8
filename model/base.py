"""What every PixelCNN variant shares: input scaling, class labels and output shapes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .config import ModelConfig


class ImageModel(nn.Module):
    """Maps integer images (B, C, H, W) with values 0..levels-1 to per-pixel logits.

    Logits have shape (B, C, H, W) for a bernoulli model (one logit per value) and
    (B, C, K, H, W) for a categorical one. Logits at a pixel and channel depend only on
    pixels earlier in raster order and on earlier channels of the same pixel.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    @property
    def no_class(self) -> int:
        """The label index that means "no class": one model serves both uses."""
        return self.config.num_classes

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        # 0 stays 0 so that zero padding at the border reads as an empty (black) canvas.
        return x.to(self.dtype) / (self.config.levels - 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def class_index(self, labels, batch: int, device) -> torch.Tensor | None:
        """Labels as embedding indices; None or negative labels mean "no class"."""
        if self.config.num_classes == 0:
            if labels is not None and torch.as_tensor(labels).ge(0).any():
                raise ValueError("This model is unconditional; it takes no class label.")
            return None
        if labels is None:
            return torch.full((batch,), self.no_class, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, dtype=torch.long, device=device).expand(batch)
        if labels.ge(self.config.num_classes).any():
            raise ValueError(
                f"Class label {labels.max().item()} is out of range for a model with "
                f"{self.config.num_classes} classes."
            )
        return torch.where(labels < 0, torch.full_like(labels, self.no_class), labels)

    def features(self, x: torch.Tensor, class_index: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def for_compiled_inference(self) -> ImageModel:
        """A copy in eval mode to hand to torch.compile for inference, computing the same
        logits (up to float32 rounding) in the way that compiles to the fastest code; this
        model stays as it is."""
        return copy.deepcopy(self).eval()

    def forward(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        c = self.config
        _, channels, height, width = x.shape
        if (channels, height, width) != (c.channels, c.height, c.width):
            raise ValueError(
                f"Image of shape {channels}x{height}x{width} does not fit a model for "
                f"{c.channels}x{c.height}x{c.width} images."
            )
        return self._logits(x, labels)

    def top_rows_logits(self, x: torch.Tensor, labels=None) -> torch.Tensor:
        """The logits of the first rows of images: x is (B, C, rows, W) with 1 <= rows <=
        height, the images' top rows. Each row's logits depend only on the rows up to it,
        so these are exactly those rows of `forward` on the whole images, at rows/height
        of the cost (what a likelihood of the pixels above a hole needs)."""
        c = self.config
        _, channels, rows, width = x.shape
        if (channels, width) != (c.channels, c.width) or not 1 <= rows <= c.height:
            raise ValueError(
                f"Rows of shape {channels}x{rows}x{width} are not the top rows of a "
                f"{c.channels}x{c.height}x{c.width} image."
            )
        return self._logits(x, labels)

    def _logits(self, x: torch.Tensor, labels) -> torch.Tensor:
        c = self.config
        batch, _, height, width = x.shape
        out = self.features(self.scale_input(x), self.class_index(labels, batch, x.device))
        if c.distribution == "bernoulli":
            return out
        return out.view(batch, c.channels, c.levels, height, width)


def class_embedding(num_classes: int, num_channels: int) -> nn.Embedding | None:
    """A learned per-class bias (zero at first), with one extra row for "no class"."""
    if num_classes == 0:
        return None
    embedding = nn.Embedding(num_classes + 1, num_channels)
    nn.init.zeros_(embedding.weight)
    return embedding


def add_class_bias(h: torch.Tensor, embedding: nn.Embedding | None, class_index) -> torch.Tensor:
    if embedding is None or class_index is None:
        return h
    return h + embedding(class_index)[:, :, None, None]
