"""Hole-aware completion: sample many completions, keep one that fits the whole picture.

The raster sampler draws each unknown pixel from p(x_i | x_<i): it sees the pixels above and
to the left, never the known pixels below or to the right of a hole, so a completion can
contradict what lies under it. Here N candidates are sampled in one batch with the fast
sampler, each whole image is scored in one batched forward pass, and one candidate is kept:

- "best": the candidate whose whole image is most probable, the largest log p(x). Among the
  candidates that is the most probable completion given every known pixel, because
  p(x_unknown | x_known) = p(x) / p(x_known) and p(x_known) is the same for all of them.
- "resample": sampling-importance-resampling (Rubin 1987; Smith & Gelfand 1992): one
  candidate drawn with probability proportional to its importance weight (see
  `resampling_weights`). As N grows this is a draw from p(x_unknown | x_known) itself.

Each candidate is scored with the class it was sampled with, so score and proposal are one
model. With class "auto" (model.posterior) the candidates' classes are drawn from p(class |
the known pixels before the hole) and the weights become p(pixels after the hole | fill,
class) of each candidate under its own class: resampling then draws from the joint posterior
of class and fill given every known pixel, and "best" keeps the most probable pair (the
prior over classes is uniform, so that is the largest log p(x | class)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .base import ImageModel
from .distributions import value_nats
from .posterior import ClassChoice, normalised, per_image, prefix_mask
from .sampling import complete
from .task import label_tensor

METHODS = ("best", "resample")

# The resampling draw's random stream: [seed, RESAMPLE_STREAM], apart from the candidates'
# streams [seed, k] (k < N), so resampling never changes what the candidates are.
RESAMPLE_STREAM = 0x5E1EC7


def evidence_mask(known) -> np.ndarray:
    """(H, W) bool: the known pixels after the first unknown one in raster order, which the
    raster sampler cannot see while it fills the pixels before them."""
    known = np.asarray(known, bool)
    return known & ~prefix_mask(known)


def reranking_matters(known) -> bool:
    """Whether any known pixel follows the first unknown one in raster order: only then can
    a completion contradict a known pixel, and reranking change anything."""
    return bool(evidence_mask(known).any())


@dataclass(frozen=True)
class Reranked:
    """N candidate completions, their scores, and the one chosen."""

    candidates: np.ndarray       # (N, C, H, W) uint8, candidate k as complete() makes it
    image_loglik: np.ndarray     # (N,) log p(x) of each whole image, nats
    evidence_loglik: np.ndarray  # (N,) log p of the known pixels after the first unknown, nats
    method: str                  # "best" or "resample"
    index: int                   # the chosen candidate
    seed: int                    # the completion's seed (resampling draws from it too)
    class_labels: tuple = ()     # per candidate, the class it was sampled and scored with
    choice: ClassChoice | None = None  # how the classes were chosen, when rerank sampled

    @property
    def image(self) -> np.ndarray:
        """(C, H, W) uint8: the chosen completion."""
        return self.candidates[self.index]

    @property
    def scores(self) -> np.ndarray:
        """(N,) what the method ranks by: log p(x) for "best", log weights for "resample"."""
        return self.image_loglik if self.method == "best" else self.evidence_loglik

    @property
    def weights(self) -> np.ndarray:
        """(N,) the resampling probabilities (they sum to 1)."""
        return resampling_weights(self.evidence_loglik)


def score(model: ImageModel, images, known, class_labels=None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(log p(x) of each image, log p of its known pixels after the first unknown one), both
    (N,) float64 nats, from one batched forward pass on the model's device, conditioned
    exactly as the sampler is: on `class_labels`, one class (or None: no class) for every
    image or a sequence of one per image."""
    images = np.asarray(images)
    after = torch.from_numpy(evidence_mask(known))
    device = next(model.parameters()).device
    x = torch.from_numpy(images).long().to(device)
    labels = label_tensor(per_image(class_labels, len(images)), device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            nats = value_nats(model, x, labels).double().sum(1).cpu()  # (N, H, W)
    finally:
        model.train(was_training)
    image_loglik = -nats.flatten(1).sum(1)
    evidence_loglik = -(nats * after).flatten(1).sum(1)
    return image_loglik.numpy(), evidence_loglik.numpy()


def resampling_weights(evidence_loglik) -> np.ndarray:
    """SIR's normalised weights: a softmax of each candidate's evidence log-likelihood.

    The candidates come from the raster sampler, q(x_U) = prod_{i in U} p(x_i | x_<i) over the
    unknown pixels U; the target is p(x_U | x_K) ∝ p(x) = q(x_U) * prod_{i in K} p(x_i | x_<i).
    The weight p(x) / q(x_U) is therefore the product over the known pixels K alone, and the
    known pixels before the first unknown one see the same pixels in every candidate, so they
    cancel in the normalisation. Weighting by the whole image's p(x) instead would count the
    fill's own probability twice (as if sampled at a lower temperature). At temperature T != 1
    the proposal is tempered; the same weights then target the tempered fill reweighted by the
    evidence, which keeps what the temperature asked for.
    """
    return normalised(evidence_loglik)


def choose(method: str, image_loglik, evidence_loglik, seed: int) -> int:
    """The index of the candidate `method` keeps (the first one on a tie for "best")."""
    check_method(method)
    if method == "best":
        return int(np.argmax(image_loglik))
    rng = np.random.default_rng([seed, RESAMPLE_STREAM])
    return int(rng.choice(len(evidence_loglik), p=resampling_weights(evidence_loglik)))


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown reranking method {method!r}; choose one of "
                         f"{', '.join(METHODS)}.")


def rank(model: ImageModel, images, known, *, method: str = "best", seed: int = 0,
         class_labels=None) -> Reranked:
    """Score finished candidates (N, C, H, W) and choose one: for a caller that ran (and
    perhaps animated) the completion itself, e.g. `complete(..., candidates=N)`, and passes
    the classes it sampled with (`completion.task.class_labels`; see `score`)."""
    check_method(method)
    images = np.asarray(images, dtype=np.uint8)
    class_labels = per_image(class_labels, len(images))
    image_loglik, evidence_loglik = score(model, images, known, class_labels)
    index = choose(method, image_loglik, evidence_loglik, seed)
    return Reranked(images, image_loglik, evidence_loglik, method, index, seed, class_labels)


def rerank(model: ImageModel, image, known=None, *, candidates: int = 16,
           method: str = "resample",
           temperature: float = 1.0, seed: int | None = None, class_label="auto",
           sampler: str = "fast", device=None) -> Reranked:
    """Complete `image` (C, H, W levels; (H, W) for one channel) N = `candidates` times in one
    batch and keep one completion by `method`. Candidate k is the completion that
    `complete(..., seed=seed)` gives as its candidate k, so with N = 1 this is plain
    completion."""
    check_method(method)  # before the sampling, not after
    completion = complete(model, image, known, sampler=sampler, device=device,
                          candidates=candidates, temperature=temperature, seed=seed,
                          class_label=class_label)
    images = completion.run()
    ranked = rank(model, images, completion.task.known, method=method, seed=completion.seed,
                  class_labels=completion.task.class_labels)
    return dataclasses.replace(ranked, choice=completion.task.classes)
