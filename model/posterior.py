"""Which class does a drawing look like? A class-conditional PixelCNN is also a classifier.

By Bayes' rule p(class | pixels) ∝ p(pixels | class) p(class), and the model gives
p(pixels | class) exactly for the known pixels before the first unknown one in raster order
(the *prefix*): each of their conditionals sees only pixels of the prefix. So one batched
forward pass, one image per class, gives the posterior; only the prefix's rows are run.

A completion that asks for class "auto" conditions each candidate on a class taken from
that posterior (`choose_classes`):

- "likely": every candidate takes the most likely class: a single completion is then the
  most recognisable one (measured: `pixelcnn-studio recognise`);
- "drawn": candidate k draws its own class from the posterior, so several candidates show
  the alternatives (a top half that could be a 7 or a 9 gives some 7s and some 9s);
- "auto": "likely" for one candidate, "drawn" for several.

With nothing known before the first unknown pixel the posterior is the prior: "likely" then
completes without a class (the model's unconditional mode), and "drawn" draws each
candidate's class from the prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .base import ImageModel
from .distributions import nats_of_values

AUTO_POLICIES = ("auto", "likely", "drawn")

# The class draw's random stream: [seed, CLASS_STREAM], apart from the candidates' streams
# [seed, k], so drawing classes never changes a candidate's uniforms.
CLASS_STREAM = 0xC1A55


def probe_drawing(config) -> np.ndarray:
    """(C, H, W) levels of a stroke down the middle (a drawn 1): the drawing that timings of
    the posterior score, the same for the app's choice of pass and for the benchmark."""
    image = np.zeros((config.channels, config.height, config.width), np.int64)
    image[:, config.height // 4:3 * config.height // 4,
          config.width // 2 - 1:config.width // 2 + 2] = 1
    return image


def prefix_mask(known) -> np.ndarray:
    """(H, W) bool: the known pixels before the first unknown one in raster order (every
    pixel when none is unknown)."""
    known = np.asarray(known, bool)
    flat = known.ravel()
    unknown = np.flatnonzero(~flat)
    prefix = np.zeros_like(flat)
    prefix[:unknown[0] if len(unknown) else len(flat)] = True
    return prefix.reshape(known.shape)


def scoring_inputs(model: ImageModel, image, known=None) -> tuple[np.ndarray, np.ndarray]:
    """The (C, H, W) levels a posterior is computed from, unknown pixels zeroed (no logit of
    the prefix depends on them), and the prefix mask; checked against the model."""
    c = model.config
    if c.num_classes == 0:
        raise ValueError("This model has no classes to infer.")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    known = np.ones(image.shape[-2:], bool) if known is None else np.asarray(known, bool)
    if image.shape != (c.channels, c.height, c.width) or known.shape != (c.height, c.width):
        raise ValueError(f"An image of shape {image.shape} with a known-pixel mask of shape "
                         f"{known.shape} does not fit a model for {c.channels}x{c.height}x"
                         f"{c.width} images.")
    values = np.ascontiguousarray(np.where(known[None], image, 0))
    return values, prefix_mask(known)


def one_image_per_class(model: ImageModel, values: np.ndarray,
                        device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch a posterior runs: `values` (C, rows, W) once for every class, and the labels,
    on `device` (default: the model's)."""
    c = model.config
    device = next(model.parameters()).device if device is None else device
    x = torch.from_numpy(values).long().to(device)[None].expand(c.num_classes, -1, -1, -1)
    return x, torch.arange(c.num_classes, device=device)


def prefix_log_likelihoods(model: ImageModel, logits: torch.Tensor, x: torch.Tensor,
                           prefix: np.ndarray) -> np.ndarray:
    """log p(prefix | class) per class from the logits of the first rows of x, float64."""
    if not logits.is_floating_point() or logits.dtype.itemsize < 4:  # bf16 from autocast
        logits = logits.float()
    nats = nats_of_values(model.config.distribution, logits, x)
    nats = nats.double().sum(1).cpu().numpy()  # (classes, rows, W)
    rows = nats.shape[1]
    return -(nats * prefix[:rows]).reshape(len(nats), -1).sum(1)


def class_log_likelihoods(model: ImageModel, image, known=None) -> np.ndarray:
    """log p(prefix | class) for every class, float64 nats, (num_classes,): one forward pass
    over the prefix's rows, one image per class, on the model's device.

    `image` is (C, H, W) levels ((H, W) for one channel); unknown pixels may hold anything
    (they are zeroed, and no logit of the prefix depends on them)."""
    values, prefix = scoring_inputs(model, image, known)
    rows = int(np.flatnonzero(prefix.any(1)).max() + 1) if prefix.any() else 0
    if rows == 0:
        return np.zeros(model.config.num_classes)
    x, labels = one_image_per_class(model, np.ascontiguousarray(values[:, :rows]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return prefix_log_likelihoods(model, model.top_rows_logits(x, labels), x, prefix)
    finally:
        model.train(was_training)


def class_posterior(model: ImageModel, image, known=None) -> np.ndarray:
    """p(class | the known pixels before the first unknown one), (num_classes,) float64,
    with a uniform prior over the model's classes (MNIST's digits are near enough equally
    common: 9.0-11.2% of the training set)."""
    return normalised(class_log_likelihoods(model, image, known))


def per_image(class_labels, count: int) -> tuple:
    """One class (or None) for each of `count` images, or a sequence of one per image, as a
    tuple."""
    if class_labels is None or isinstance(class_labels, (int, np.integer)):
        return (class_labels,) * count
    return tuple(class_labels)


def normalised(log_weights) -> np.ndarray:
    """A softmax: probabilities proportional to exp(log_weights), computed stably."""
    log_weights = np.asarray(log_weights, np.float64)
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


@dataclass(frozen=True)
class ClassChoice:
    """The class each candidate of a completion is conditioned on, and why."""

    labels: tuple  # per candidate: a class, or None for no class
    policy: str  # "none", "fixed", "given", "likely" or "drawn"
    posterior: np.ndarray | None = None  # p(class | prefix) when the policy used one

    @property
    def label(self):
        """The one class every candidate shares (None: no class); ValueError if they differ."""
        if len(set(self.labels)) > 1:
            raise ValueError("The candidates are conditioned on different classes.")
        return self.labels[0]


def choose_classes(model: ImageModel, image, known, class_label, candidates: int,
                   seed: int) -> ClassChoice:
    """Each candidate's class for `class_label`: None (no class), a class, a sequence of one
    per candidate (each a class or None), or one of AUTO_POLICIES (see the module's
    docstring). Draws come from the stream [seed, CLASS_STREAM]; a model without classes
    takes "auto" as no class."""
    c = model.config
    if isinstance(class_label, str):
        if class_label not in AUTO_POLICIES:
            raise ValueError(f"Unknown class {class_label!r}; give a class number, None, or "
                             f"one of {', '.join(AUTO_POLICIES)}.")
        if c.num_classes == 0:
            return ClassChoice((None,) * candidates, "none")
        policy = class_label
        if policy == "auto":
            policy = "likely" if candidates == 1 else "drawn"
        posterior = class_posterior(model, image, known)
        if policy == "likely":
            if known is not None and not prefix_mask(known).any():  # the posterior is the prior
                return ClassChoice((None,) * candidates, "none", posterior)
            return ClassChoice((int(np.argmax(posterior)),) * candidates, policy, posterior)
        rng = np.random.default_rng([seed, CLASS_STREAM])
        drawn = rng.choice(c.num_classes, size=candidates, p=posterior)
        return ClassChoice(tuple(int(k) for k in drawn), policy, posterior)
    if class_label is None or isinstance(class_label, (int, np.integer)):
        labels = per_image(class_label, candidates)
        policy = "none" if class_label is None else "fixed"
    elif isinstance(class_label, Sequence | np.ndarray):
        labels, policy = per_image(class_label, candidates), "given"
        if len(labels) != candidates:
            raise ValueError(f"{len(labels)} class labels given for {candidates} candidates.")
    else:
        raise ValueError(f"A class must be a number, None or one of {', '.join(AUTO_POLICIES)}"
                         f", not {class_label!r}.")
    for label in labels:
        if label is not None and not 0 <= label < c.num_classes:
            raise ValueError(f"Class {label} is not available; this model has "
                             f"{c.num_classes} classes.")
    return ClassChoice(tuple(None if k is None else int(k) for k in labels), policy)
