"""What the compiled kernels take, by name: Numba passes these tuples of arrays and numbers to
compiled code as they are, so a call names each part instead of listing thirty arguments in
an order the kernel must match."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class RowState(NamedTuple):
    """The row kernel's per-candidate state, read and written."""
    hin: np.ndarray  # (L, B, padded columns * cin): each layer's input along the row
    link_rows: np.ndarray  # (L, B, W * 2w): what the rows above give each column
    gated: np.ndarray  # (B, L * w): every layer's gate at the current column


class RowWeights(NamedTuple):
    """The horizontal stack's and the head's weights, (inputs, outputs)."""
    cins: np.ndarray  # (L,) input channels of each layer
    kws: np.ndarray  # (L,) kernel width of each layer
    h_weights: np.ndarray  # (L, longest window, 2w)
    res_weights: np.ndarray  # (L, w, w)
    res_biases: np.ndarray  # (L, w)
    skip_weight: np.ndarray
    skip_bias: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray  # (C, hidden, K): one head output per image channel
    b2: np.ndarray


class Drawing(NamedTuple):
    """How values are drawn from the logits."""
    bernoulli: bool  # one logit (of level 1) per value, else K logits
    temperature: float
    top_level: int  # K - 1: a drawn value is written back as value / top_level
    uniforms: np.ndarray  # (B, C, H, W): each candidate's own stream


class VerticalState(NamedTuple):
    vin_all: np.ndarray  # (L, B, padded rows * padded columns * cin)
    link_all: np.ndarray  # (L, B, W * 2w): the link the last finished row gives the next


class VerticalWeights(NamedTuple):
    khs: np.ndarray  # (L,) kernel heights
    ks: np.ndarray  # (L,) kernel widths
    cins: np.ndarray  # (L,) input channels
    v_weights: np.ndarray  # (L, longest window, 2w), rows ordered (kh, k, cin)
    v_biases: np.ndarray  # (L, 2w)
    links: np.ndarray  # (L, 2w, 2w)
    h_biases: np.ndarray  # (L, 2w)
