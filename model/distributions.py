"""From logits to probabilities, samples and likelihoods.

Both samplers turn a pixel's logits into probabilities and a value with the functions
here, in float64 NumPy, so that equal logits always give equal samples. (The fast sampler's
compiled kernels repeat `probabilities` and `draw` operation for operation, in the same
order: model/fast/kernels.py, tested against these.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import ImageModel


def value_nats(model: ImageModel, x: torch.Tensor, labels=None) -> torch.Tensor:
    """-log p of every value given everything before it, in nats: shape (B, C, H, W)."""
    return nats_of_values(model.config.distribution, model(x, labels), x)


def nats_of_values(distribution: str, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p of each value of x (B, C, H, W) under its logits, in nats: (B, C, H, W)."""
    if distribution == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    # logits (B, C, K, H, W): the class dimension is dim 2
    return F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none")


def nll_nats(model: ImageModel, x: torch.Tensor, labels=None) -> torch.Tensor:
    """Negative log-likelihood of each image in nats: a tensor of shape (B,)."""
    return value_nats(model, x, labels).flatten(1).sum(1)


def nats_to_bits_per_dim(nats: torch.Tensor | float, dims: int):
    """Nats per image to bits per dimension (dims = C * H * W)."""
    return nats / (dims * math.log(2))


def nll(model: ImageModel, x: torch.Tensor, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image negative log-likelihood as (nats, bits per dimension)."""
    nats = nll_nats(model, x, labels)
    c = model.config
    return nats, nats_to_bits_per_dim(nats, c.channels * c.height * c.width)


def probabilities(logits: np.ndarray, distribution: str, temperature: float) -> np.ndarray:
    """Per-value probabilities, shape (B, K), from one pixel-channel's logits.

    `logits` is (B,) for bernoulli (the logit of value 1) or (B, K). Temperature 0 puts
    all mass on the most likely value (the first one on a tie). Called once per sampled
    value, so it keeps to a few small NumPy operations.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if distribution == "bernoulli":
        if temperature <= 0:
            p1 = (logits > 0).astype(np.float64)
        else:  # sigmoid, written with tanh so that no logit overflows
            p1 = 0.5 + 0.5 * np.tanh(logits / (2 * temperature))
        probs = np.empty((len(p1), 2))
        probs[:, 1] = p1
        np.subtract(1.0, p1, out=probs[:, 0])
        return probs
    if temperature <= 0:
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=-1)] = 1.0
        return probs
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def draw(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: for each row the value whose cumulative mass passes u."""
    if probs.shape[-1] == 2:  # the same rule, without the general bookkeeping
        return (probs[:, 0] <= uniforms).astype(np.int64)
    values = (probs.cumsum(axis=-1) <= uniforms[:, None]).sum(axis=-1)
    return np.minimum(values, probs.shape[-1] - 1)


def pixel_surprise(model: ImageModel, image: np.ndarray, class_label=None) -> np.ndarray:
    """-log p of each pixel's value given everything before it, in nats, summed over
    channels: (H, W). One forward pass; the app shows it as a heatmap."""
    device = next(model.parameters()).device
    x = torch.from_numpy(np.asarray(image)[None]).long().to(device)
    labels = None if class_label is None else torch.tensor([class_label], device=device)
    with torch.inference_mode():
        nats = value_nats(model, x, labels).float()
    return nats[0].sum(0).cpu().numpy()
