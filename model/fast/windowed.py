"""The classic PixelCNN, evaluated on a window that just covers each pixel's receptive field."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..pixelcnn import PixelCNN
from ..task import PixelSample, SamplingTask


def _windowed_steps(model: PixelCNN, task: SamplingTask, device) -> Iterator[PixelSample]:
    """Each pixel's logits from a crop that just covers its receptive field. Features
    near the crop's edges differ from the full image's, but never reach the pixel."""
    radius = model.receptive_radius()
    cfg = task.config
    B = task.candidates
    class_index = model.class_index(task.labels(device), B, device)

    @torch.inference_mode()
    def logits_at(row: int, col: int, channel: int) -> np.ndarray:
        top, left = max(0, row - radius), max(0, col - radius)
        right = min(cfg.width, col + radius + 1)
        crop = torch.from_numpy(task.images[:, :, top:row + 1, left:right]).to(device)
        out = model.features(model.scale_input(crop), class_index)
        out = out.view(B, cfg.channels, cfg.outputs_per_channel, *out.shape[-2:])
        logits = out[:, channel, :, row - top, col - left].double().cpu().numpy()
        return logits[:, 0] if cfg.distribution == "bernoulli" else logits

    for row, col in task.unknown:
        for channel in range(cfg.channels):
            yield from task.sample(row, col, channel, logits_at(row, col, channel))
