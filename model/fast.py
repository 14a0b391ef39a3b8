"""The fast sampler: the same distributions as the reference, computing only what changes.

Generating pixel p re-runs the whole network in the tutorial's procedure, although almost
everything it computes was already computed for pixel p-1 and cannot have changed. Following
Ramachandran et al. 2017 ("Fast Generation for Convolutional Autoregressive Models"), the
gated model keeps per layer what can no longer change and computes only the new position:

- the vertical stack's rows, computed once per row when the row is finished (its output at
  row r depends only on image rows <= r), which give the horizontal stack its row link;
- the horizontal stack's values of the current row, one new column per layer and pixel.

Known pixels are never sampled; a fully known prefix costs one batched pass. The classic
PixelCNN has no such split, so each of its pixels is computed on a window that just covers
its receptive field.

On the CPU the per-pixel work is a few dozen tiny matrix products: compiled kernels (Numba,
model/kernels.py) sample a whole row per call and compute the vertical stack of a finished
row in another, each on all cores (the candidates dealt out), and without Numba NumPy does
it (its call overhead is several times lower than PyTorch's); elsewhere the same code runs
on torch tensors on the device. Weights are taken from the model with their masks applied,
so both samplers evaluate the same function.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from operator import itemgetter, setitem

import numpy as np
import torch

from . import kernels

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its threads
    ThreadpoolController = None
from .base import ImageModel
from .gated import GatedPixelCNN
from .pixelcnn import PixelCNN
from .task import Completion, PixelSample, SamplingTask, on_device, pick_device


class NumpyArrays:
    """The handful of array operations the stepper needs, on NumPy (CPU)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = np.float64 if dtype == torch.float64 else np.float32

    def convert(self, tensor: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().cpu().numpy().astype(self.dtype))

    def zeros(self, *shape) -> np.ndarray:
        return np.zeros(shape, self.dtype)

    def windows(self, x: np.ndarray, kh: int, k: int) -> np.ndarray:
        """(B, rows, cols, cin) -> every kh x k window, (B, n, W, kh, k, cin), as a view."""
        B, rows, cols, cin = x.shape
        sb, sr, sc, sch = x.strides
        return np.lib.stride_tricks.as_strided(
            x, (B, rows - kh + 1, cols - k + 1, kh, k, cin), (sb, sr, sc, sr, sc, sch),
            writeable=False)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return x

    def from_numpy(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype)

    matmul = staticmethod(np.matmul)
    tanh = staticmethod(np.tanh)
    add = staticmethod(np.add)
    multiply = staticmethod(np.multiply)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0, out=x)


class TorchArrays:
    """The same operations on torch tensors on any device (CUDA, MPS or the CPU)."""

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device

    def convert(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().to(self.device, self.dtype).contiguous()

    def zeros(self, *shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def windows(self, x: torch.Tensor, kh: int, k: int) -> torch.Tensor:
        return x.unfold(1, kh, 1).unfold(2, k, 1).permute(0, 1, 2, 4, 5, 3)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.cpu().numpy()

    def from_numpy(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)

    matmul = staticmethod(torch.matmul)
    tanh = staticmethod(torch.tanh)
    add = staticmethod(torch.add)
    multiply = staticmethod(torch.mul)

    @staticmethod
    def relu(x):
        return x.clamp_(min=0)


def _split_gate(tensor: torch.Tensor) -> torch.Tensor:
    """Halve the b half of a gate's pre-activation so that one tanh serves both halves:
    sigmoid(b) = (1 + tanh(b / 2)) / 2. The factor 1/2 moves into the consumers."""
    a, b = tensor.chunk(2, dim=-1)
    return torch.cat([a, b / 2], dim=-1)


class GatedWeights:
    """A GatedPixelCNN's weights laid out for incremental evaluation: masks applied, the b
    half of every gate halved (see _split_gate), (inputs, outputs) for row-vector products."""

    def __init__(self, model: GatedPixelCNN, arrays, compiled: bool):
        self.arrays = xp = arrays
        self.width = w = model.config.hidden_channels
        # What gate_biases needs, detached from the modules (this object must not keep the
        # model alive: it is cached against a weak reference to it).
        self.bias_sources = [(
            layer.vertical.bias.detach(),
            layer.horizontal.bias.detach() + layer.link.bias.detach(),
            None if layer.class_bias_v is None else layer.class_bias_v.weight.detach(),
            None if layer.class_bias_h is None else layer.class_bias_h.weight.detach(),
        ) for layer in model.layers]
        self.layers = []
        for index, layer in enumerate(model.layers):
            vw = layer.vertical.weight.detach()  # (2w, cin, kh, k)
            cin, kh, k = vw.shape[1:]
            if index:  # vin holds twice the previous layer's gate (see _vertical)
                vw = vw / 2
            hw = layer.horizontal.masked_weight().detach()  # (2w, cin, 1, kw)
            link = layer.link.weight.detach()[:, :, 0, 0].T  # (2w in, 2w out)
            link = torch.cat([link[:w], link[w:] * 2])  # it reads the halved v_pre
            residual = layer.residual
            self.layers.append(dict(
                cin=cin, kh=kh, k=k, kw=hw.shape[-1],
                # Ordered as the windows come: (kh, k, cin).
                v_weight=xp.convert(_split_gate(vw.permute(2, 3, 1, 0).reshape(-1, 2 * w))),
                # The link and the horizontal conv feed the same gate, so both are split.
                link=xp.convert(_split_gate(link)),
                # The horizontal window is read as (kw, cin) from channels-last rows.
                h_weight=xp.convert(
                    _split_gate(hw[:, :, 0, :].permute(2, 1, 0).reshape(-1, 2 * w))),
                res_weight=None if residual is None else xp.convert(
                    residual.masked_weight().detach()[:, :, 0, 0].T / 2),
                res_bias=None if residual is None else xp.convert(residual.bias.detach()),
            ))
        skips = [layer.skip for layer in model.layers]
        self.skip_weight = xp.convert(  # (L*w, w): all skip 1x1s as one product
            torch.cat([s.masked_weight().detach()[:, :, 0, 0].T / 2 for s in skips]))
        self.skip_bias = xp.convert(sum(s.bias.detach() for s in skips))
        first, last = model.head[1], model.head[3]
        self.head1_weight = xp.convert(first.masked_weight().detach()[:, :, 0, 0].T)
        self.head1_bias = xp.convert(first.bias.detach())
        out = model.config.outputs_per_channel
        w2, b2 = last.masked_weight().detach()[:, :, 0, 0], last.bias.detach()
        self.head2 = [(xp.convert(w2[c * out:(c + 1) * out].T),
                       xp.convert(b2[c * out:(c + 1) * out]))
                      for c in range(model.config.channels)]
        self.compiled = None
        if compiled:  # stacked per layer, (inputs, outputs) as the kernels' products take
            L, dtype = len(self.layers), xp.dtype
            h_weights = np.zeros((L, max(p["kw"] * p["cin"] for p in self.layers), 2 * w), dtype)
            v_weights = np.zeros((L, max(len(p["v_weight"]) for p in self.layers), 2 * w), dtype)
            res_weights = np.zeros((L, w, w), dtype)
            res_biases = np.zeros((L, w), dtype)
            for depth, p in enumerate(self.layers):
                h_weights[depth, :len(p["h_weight"])] = p["h_weight"]
                v_weights[depth, :len(p["v_weight"])] = p["v_weight"]
                if p["res_weight"] is not None:
                    res_weights[depth] = p["res_weight"]
                    res_biases[depth] = p["res_bias"]
            self.compiled = dict(
                cins=np.array([p["cin"] for p in self.layers], np.int64),
                kws=np.array([p["kw"] for p in self.layers], np.int64),
                khs=np.array([p["kh"] for p in self.layers], np.int64),
                ks=np.array([p["k"] for p in self.layers], np.int64),
                v_weights=v_weights, links=np.stack([p["link"] for p in self.layers]),
                h_weights=h_weights, res_weights=res_weights, res_biases=res_biases,
                # The head, its last layer stacked per channel: (C, w, outputs), (C, outputs).
                head=(self.skip_weight, self.skip_bias, self.head1_weight, self.head1_bias,
                      np.stack([w2 for w2, _ in self.head2]),
                      np.stack([b2 for _, b2 in self.head2])),
            )

    def gate_biases(self, class_index: int | None):
        """Per layer (vertical, horizontal) pre-activation biases, with the class's (every
        candidate has the same), shaped to broadcast over candidates and positions."""
        xp = self.arrays
        for v_bias, h_bias, v_table, h_table in self.bias_sources:
            v_bias, h_bias = v_bias[None], h_bias[None]
            if class_index is not None:
                v_bias = v_bias + v_table[class_index]
                h_bias = h_bias + h_table[class_index]
            yield (xp.convert(_split_gate(v_bias)[:, None, None, :]),
                   xp.convert(_split_gate(h_bias)[:, None, :]))


# Prepared weights per model, reused while its parameters are unchanged: the app completes
# with the same model again and again.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prepared_weights(model: GatedPixelCNN, backend: str, device: torch.device) -> GatedWeights:
    versions = tuple(p._version for p in model.parameters())
    key = (backend, model.dtype, str(device))
    cached = _prepared.setdefault(model, {}).get(key)
    if cached is None or cached[0] != versions:
        arrays = (TorchArrays(model.dtype, device) if backend == "torch"
                  else NumpyArrays(model.dtype))
        with torch.no_grad():
            cached = (versions, GatedWeights(model, arrays, compiled=backend == "compiled"))
        _prepared[model][key] = cached
    return cached[1]


# Completions running at once (the app's worker and the kernel warm-up, say) share one BLAS
# limit: the first to start sets it, the last to finish lifts it.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_controller = None


@contextlib.contextmanager
def single_threaded_blas():
    """A context in which NumPy's BLAS runs on the calling thread only.

    The NumPy path's row products (the vertical stack's, and a row's known start) are
    small. Given its threads, OpenBLAS splits them and leaves its helper threads spinning
    after each product, and they take the cores from whatever runs between products.
    Measured on this project's 2-core machine when the compiled path still ran its vertical
    stack in BLAS: a 24x24 RGB completion took 0.7-1.0 s with them and 0.17 s without; 9
    candidates of a 28x28 digit 2.6 s with them and 0.2 s without. One thread loses little:
    these products run at 78 GFLOP/s on one thread and 84 on two. (The compiled path now
    calls no BLAS.)
    """
    global _blas_users, _blas_limiter, _blas_controller
    with _blas_lock:
        if _blas_users == 0 and ThreadpoolController is not None:
            _blas_controller = _blas_controller or ThreadpoolController()  # scans libraries
            _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


class GatedStepper:
    """Incremental evaluation of a GatedPixelCNN for a batch of images (candidates).

    Candidates start from the same image, so until their first different sample their
    states are identical: with `share` (the default) the stepper computes one of them and
    hands its logits to all, and splits into one state per candidate at the first value
    they draw differently (`fork`). On a digit the blank top rows are often sampled alike;
    a known prefix is always shared; at temperature 0 the candidates never split.
    """

    def __init__(self, weights: GatedWeights, task: SamplingTask, share: bool = True):
        self.weights = weights
        self.arrays = weights.arrays
        self.task = task
        B, C, H, W = task.images.shape
        self.shape = (B, C, H, W)
        self.top_level = task.config.levels - 1  # scaled as the model does: x / (K-1)
        self.width = weights.width
        self.skip_weight, self.skip_bias = weights.skip_weight, weights.skip_bias
        self.head1_weight, self.head1_bias = weights.head1_weight, weights.head1_bias
        self.head2 = weights.head2
        # The compiled kernels' rational tanh is within 3e-7 of tanh: for float32 only.
        self.fast_tanh = self.arrays.dtype == np.float32
        self.known = np.ascontiguousarray(task.known)
        self.vertical_done = 0  # rows whose vertical stack is computed
        self.hin_row = None  # the row whose pixels the horizontal stack's input holds
        cfg, label = task.config, task.classes.label  # one class for all (see _by_class)
        class_index = None
        if cfg.num_classes:
            class_index = cfg.num_classes if label is None else label
        with torch.no_grad():
            biases = list(weights.gate_biases(class_index))
        self.layers = [dict(p, v_bias=v_bias, h_bias=h_bias)
                       for p, (v_bias, h_bias) in zip(weights.layers, biases, strict=True)]
        if weights.compiled is not None:  # stacked for the compiled vertical stack: (L, 2w)
            self.v_biases, self.h_biases = (
                np.stack([p[name].reshape(-1) for p in self.layers])
                for name in ("v_bias", "h_bias"))
        self._allocate(1 if share else B)

    def _allocate(self, batch: int) -> None:
        """The per-candidate state, zeroed, for `batch` candidates."""
        xp, weights, w = self.arrays, self.weights, self.width
        self.batch = batch
        _, _, H, W = self.shape
        # Per-layer buffers live in one stacked array each (the compiled kernels take whole
        # arrays); the per-layer names are views into them.
        L = len(self.layers)
        # Vertical inputs, channels-last and padded for each layer's kernel: layer i reads
        # rows r-kh+1..r of vin[i]; vin[i+1] holds layer i's gated output.
        shapes = [(H + p["kh"] - 1, W + p["k"] - 1, p["cin"]) for p in self.layers]
        self.vin_all = xp.zeros(L, batch, max(math.prod(shape) for shape in shapes))
        self.vin = [self.vin_all[depth, :, :math.prod(shape)].reshape(batch, *shape)
                    for depth, shape in enumerate(shapes)]
        # Every kh x k window of each vin, made once: slicing rows of it is cheap. (The
        # compiled kernels read the windows where they lie.)
        self.vin_windows = None if weights.compiled is not None else [
            xp.windows(v, p["kh"], p["k"]) for v, p in zip(self.vin, self.layers, strict=True)]
        self.link_all = xp.zeros(L, batch, W * 2 * w)
        self.link_rows = [self.link_all[depth].reshape(batch, W, 2 * w) for depth in range(L)]
        # Horizontal inputs of the current row, padded on the left by kw-1 columns.
        lengths = [(W + p["kw"] - 1) * p["cin"] for p in self.layers]
        self.hin_all = xp.zeros(L, batch, max(lengths))
        self.hin = [self.hin_all[depth, :, :n].reshape(batch, W + p["kw"] - 1, p["cin"])
                    for depth, (n, p) in enumerate(zip(lengths, self.layers, strict=True))]
        self.gated = xp.zeros(batch, L, w)  # each layer's gate output at the current position
        self.compiled = None
        if weights.compiled is not None:
            c = weights.compiled
            self.vertical_args = (
                kernels.VerticalState(self.vin_all, self.link_all),
                kernels.VerticalWeights(c["khs"], c["ks"], c["cins"], c["v_weights"],
                                        self.v_biases, c["links"], self.h_biases),
                self.fast_tanh)
            task = self.task  # what kernels.sample_share takes after the row's known pixels
            self.compiled = (
                kernels.RowState(self.hin_all, self.link_all, self.gated.reshape(batch, -1)),
                kernels.RowWeights(c["cins"], c["kws"], c["h_weights"], c["res_weights"],
                                   c["res_biases"], *c["head"]),
                self.fast_tanh,
                kernels.Drawing(task.config.distribution == "bernoulli", task.temperature,
                                self.top_level, task.uniforms))

    @property
    def shared(self) -> bool:
        """Whether one state still stands for every candidate."""
        return self.batch < self.shape[0]

    def fork(self) -> None:
        """Give every candidate its own copy of the shared state."""
        vin, link_all, hin_all, gated = self.vin, self.link_all, self.hin_all, self.gated
        self._allocate(self.shape[0])
        for new, old, p in zip(self.vin, vin, self.layers, strict=True):
            filled = self.vertical_done + p["kh"] - 1  # the rows below are still zeros
            new[:, :filled] = old[:, :filled]  # broadcast over the candidates
        self.link_all[...] = link_all
        self.hin_all[...] = hin_all
        # A split between two channels of a pixel: the compiled kernels carry on from the
        # gates of the channels drawn (see kernels._group_column).
        self.gated[...] = gated

    def _pixels(self, rows: slice, first: int = 0, end: int | None = None):
        """Scaled image rows, channels-last: (B, rows, W, C) (candidates first .. end-1)."""
        end = self.batch if end is None else end
        values = self.task.images[first:end, :, rows].transpose(0, 2, 3, 1) / self.top_level
        return self.arrays.from_numpy(values)

    def _vertical(self, r0: int, r1: int, chunk: tuple[int, int] | None = None,
                  last_sampled: int | None = None) -> None:
        """Vertical stack for finished rows r0..r1-1, and the link they give the row below:
        for every candidate state, or (compiled) for one chunk of them (first, end), with
        row `last_sampled` read from the horizontal stack's input (see RowJob)."""
        W, p0 = self.shape[3], self.layers[0]
        first, end = chunk or (0, self.batch)
        top, left = p0["kh"] - 1, p0["k"] // 2
        rows = self.vin[0][first:end, top + r0:top + r1, left:left + W]
        sampled = last_sampled if last_sampled is not None and r0 <= last_sampled < r1 else r1
        for a, b in ((r0, sampled), (sampled + 1, r1)):  # known rows, from the images
            if a < b:
                rows[:, a - r0:b - r0] = self._pixels(slice(a, b), first, end)
        if sampled < r1:
            rows[:, sampled - r0] = self.hin[0][first:end, p0["kw"] - 1:]
        if self.compiled is not None:  # every layer (a chunk, or the shared start's state)
            kernels.vertical_share(first, end, r0, r1, *self.vertical_args)
            return
        xp, w, B, n = self.arrays, self.width, self.batch, r1 - r0
        for depth, p in enumerate(self.layers):
            windows = self.vin_windows[depth][:, r0:r1]  # (B, n, W, kh, k, cin)
            # One two-dimensional product (a copy of the windows, then BLAS) for all rows.
            v_pre = xp.matmul(windows.reshape(B * n * W, -1), p["v_weight"])
            v_pre = v_pre.reshape(B, n, W, 2 * w)  # the b half of the gate halved
            if depth + 1 < len(self.layers):
                q = self.layers[depth + 1]
                top, left = r0 + q["kh"] - 1, q["k"] // 2
                v_pre += p["v_bias"]
                t = xp.tanh(v_pre)
                t[..., w:] += 1  # tanh(a) * (1 + tanh(b/2)): twice the gate, exact to halve
                xp.multiply(t[..., :w], t[..., w:],
                            out=self.vin[depth + 1][:, top:top + n, left:left + W])
            else:
                v_pre += p["v_bias"]
            # Only the last finished row's link is needed: by the row just below it.
            last = v_pre[:, -1].reshape(B * W, 2 * w)  # a view when n is 1, else a copy
            xp.add(xp.matmul(last, p["link"]).reshape(B, W, 2 * w), p["h_bias"],
                   out=self.link_rows[depth])

    def begin_row(self, row: int) -> None:
        if row > self.vertical_done:
            self._vertical(self.vertical_done, row)
            self.vertical_done = row
        elif row == 0:  # nothing above the first row: its link is the bias alone
            for link, p in zip(self.link_rows, self.layers, strict=True):
                link[...] = p["h_bias"]
        p0 = self.layers[0]
        self.hin[0][:, p0["kw"] - 1:] = self._pixels(slice(row, row + 1))[:, 0]
        self.hin_row = row

    def start_row(self, row: int, last_col: int) -> RowJob:
        """The compiled path once every candidate has its own state: row `row` (sampled
        through last_col) as a job to run chunk by chunk, several at once (RowJob)."""
        job = RowJob(self, row, last_col, self.vertical_done, self.hin_row)
        self.vertical_done = max(self.vertical_done, row)
        self.hin_row = row
        return job

    def write(self, col: int, channel: int, values: np.ndarray) -> None:
        """Enter the values drawn (one per candidate) at the current pixel-channel."""
        if self.shared:
            if (values == values[0]).all():
                values = values[:1]
            else:
                self.fork()
        self.hin[0][:, self.layers[0]["kw"] - 1 + col, channel] = self.arrays.from_numpy(
            values / self.top_level)

    def horizontal(self, c0: int, c1: int) -> None:
        """Horizontal stack at columns c0..c1 of the current row, every layer."""
        xp, w = self.arrays, self.width
        single = c0 == c1
        for depth, p in enumerate(self.layers):
            kw, hin = p["kw"], self.hin[depth]
            if single:  # a view: kw consecutive channels-last columns
                window = hin[:, c0:c0 + kw].reshape(hin.shape[0], -1)
                link = self.link_rows[depth][:, c0]
            else:
                window = xp.windows(hin[:, None, c0:c1 + kw], 1, kw)  # (B, 1, n, 1, kw, cin)
                window = window.reshape(hin.shape[0], c1 - c0 + 1, -1)
                link = self.link_rows[depth][:, c0:c1 + 1]
            pre = xp.matmul(window, p["h_weight"])
            pre += link
            t = xp.tanh(pre, out=pre)
            t[..., w:] += 1
            gated = t[..., :w] * t[..., w:]  # twice the gate: the 1/2 is in the weights
            self.gated[:, depth] = gated if single else gated[:, -1]
            if depth + 1 == len(self.layers):
                break
            q = self.layers[depth + 1]
            out = self.hin[depth + 1][:, q["kw"] - 1 + c0:q["kw"] + c1]
            target = out[:, 0] if single else out
            if p["res_weight"] is None:  # the first layer: its output is the gate itself
                xp.multiply(gated, 0.5, out=target)
            else:
                centre = hin[:, kw - 1 + c0:kw + c1]
                xp.add(xp.matmul(gated, p["res_weight"]), centre[:, 0] if single else centre,
                       out=target)
                out += p["res_bias"]

    def column_logits(self, col: int, channel: int) -> np.ndarray:
        """horizontal(col, col), then logits(channel), one row per candidate."""
        self.horizontal(col, col)
        out = self.logits(channel)
        return np.repeat(out, self.shape[0], axis=0) if self.shared else out

    def sample_run(self, row: int, col: int, channel: int, last_col: int):
        """The compiled kernels sample the current row from (col, channel) through last_col
        (known columns get their horizontal stack only), writing each value where the next
        one reads it. Returns (values (B, W, C), probs (B, W, C, K), how many pixel-channels
        were drawn): fewer than asked when candidates sharing one state drew a value
        differently (the last one drawn; `write` it to give each its own state)."""
        values, probs = self.row_outputs()
        drawn = _in_shares(kernels.sample_share, self.batch, self.shared, row, col, channel,
                           last_col, self.known[row], *self.compiled, values, probs)
        return values, probs, drawn

    def row_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the compiled kernels put a row's draws: values (B, W, C) and their
        distributions (B, W, C, K) (a bernoulli model has 2 levels)."""
        B, C, _, W = self.shape
        return np.empty((B, W, C), np.int64), np.empty((B, W, C, self.task.config.levels))

    def logits(self, channel: int) -> np.ndarray:
        """The current position's logits for one channel: (B,) bernoulli or (B, K)."""
        xp = self.arrays
        B = self.batch
        weight, bias = self.head2[channel]
        skip = xp.matmul(self.gated.reshape(B, -1), self.skip_weight)
        skip += self.skip_bias
        hidden = xp.matmul(xp.relu(skip), self.head1_weight)
        hidden += self.head1_bias
        out = xp.matmul(xp.relu(hidden), weight)
        out += bias
        out = xp.to_numpy(out).astype(np.float64)
        return out[:, 0] if out.shape[1] == 1 else out


class RowJob:
    """One row's work on the compiled path once every candidate has its own state, run a
    chunk of the candidates per call (`job(first, end)`), chunks on different threads at
    once: the vertical stack of the rows finished since the last row, the row's known
    pixels, then its values drawn into `values` and `probs`.

    The row sampled last is read from the horizontal stack's input, where the kernel wrote
    its values, not from the images: the stream may still be handing them out (the helper
    threads compute a row while the calling thread streams the one before)."""

    def __init__(self, stepper: GatedStepper, row: int, last_col: int, vertical_done: int,
                 last_sampled: int | None):
        self.stepper, self.row, self.last_col = stepper, row, last_col
        self.vertical_done, self.last_sampled = vertical_done, last_sampled
        self.values, self.probs = stepper.row_outputs()

    def __call__(self, first: int, end: int) -> None:
        stepper, row, r0 = self.stepper, self.row, self.vertical_done
        p0 = stepper.layers[0]
        if row > r0:
            stepper._vertical(r0, row, (first, end), self.last_sampled)
        elif row == 0:  # nothing above the first row: its link is the bias alone
            for link, p in zip(stepper.link_rows, stepper.layers, strict=True):
                link[first:end] = p["h_bias"]
        stepper.hin[0][first:end, p0["kw"] - 1:] = stepper._pixels(slice(row, row + 1), first,
                                                                   end)[:, 0]
        kernels.sample_share(first, end, False, row, 0, 0, self.last_col, stepper.known[row],
                             *stepper.compiled, self.values, self.probs)


def cores() -> int:
    """How many cores this process may run on: the candidates are dealt out over them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Threads that run shares of the candidates beside the calling thread, made on first use.
_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _share_bounds(batch: int) -> list[tuple[int, int]]:
    """Candidates 0 .. batch-1 dealt out in nearly equal shares, one per core (9 on two
    cores: 4 and 5; the calling thread takes the first)."""
    shares = min(batch, cores())
    return [(k * batch // shares, (k + 1) * batch // shares) for k in range(shares)]


def _helper_threads() -> ThreadPoolExecutor:
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(cores() - 1, thread_name_prefix="pixelcnn-share")
    return _helpers


def _in_shares(kernel, batch: int, *args):
    """kernel(first, end, *args) for candidate states first .. end-1 of `batch`, one share
    per core, run on the calling thread and helper threads at once (the kernels release the
    GIL): one handoff per call. (Numba's parallel build did the same 5-10% faster, but it
    compiled for 10 s more at a new installation's first start, and its fallback threading
    layer aborts the process if two threads start parallel kernels at once.) Returns the
    calling thread's share's result (a row's shares stop at the same value: they never
    share a state)."""
    mine, *others = _share_bounds(batch)
    if not others:
        return kernel(*mine, *args)
    running = [_helper_threads().submit(kernel, *share, *args) for share in others]
    try:
        return kernel(*mine, *args)
    finally:  # the rows' arrays must not change under a helper still at work
        for other in running:
            other.result()


def _gated_steps(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    if stepper.compiled is not None:  # no BLAS: every product is in the compiled kernels
        yield from _gated_rows_in_order(stepper, task)
        return
    # For the whole completion (the limit is the process's, shared with any completion
    # running at the same time; it ends when the last of them does).
    on_cpu = isinstance(stepper.arrays, NumpyArrays)
    with single_threaded_blas() if on_cpu else contextlib.nullcontext():
        yield from _gated_steps_in_order(stepper, task)


def _unknown_columns(task: SamplingTask) -> dict[int, list[int]]:
    """Each row with unknown pixels, in order, with its unknown columns, in order."""
    unknown_columns = defaultdict(list)
    for row, col in task.unknown:
        unknown_columns[row].append(col)
    return unknown_columns


# PixelSample(...) without the named tuple's Python-level __new__.
_new_sample = tuple.__new__
_second = itemgetter(1)


def _gated_rows_in_order(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    """The compiled path: a row's values are drawn by kernel calls, then streamed. While
    the candidates share one state a row may take several calls (one more each time they
    split); after that each row is one job, run in chunks (_rows_by_chunks).

    Stopping the stream between two values leaves the rest of that row's work (and at
    most the next row's) done for nothing, but nothing of it is seen:
    `task.images` gets each candidate's value as its sample is handed out. A run's samples
    are made and handed out by iterators built per run, with no line of Python per value or
    sample (9 candidates of a 28x28 image: 7,056 samples)."""
    channels, candidates = task.config.channels, task.candidates
    _, _, height, width = task.images.shape
    images = task.images.view()
    images.shape = (-1,)  # flat, and never a copy (this raises where it would have to be)
    image_starts = np.arange(candidates) * images.size // candidates
    candidate_numbers = np.tile(np.arange(candidates), width * channels)

    def stream(row, order, values, probs):
        """The samples of pixel-channels `order` ((col, channel) pairs) of `row`, value by
        value and within a value candidate by candidate, each candidate's value written to
        the images just before its sample; and the values in that order."""
        drawn = len(order)
        cols, chans = order.T
        run_values = values[:, cols, chans].T.ravel().tolist()
        run_probs = probs[:, cols, chans].transpose(1, 0, 2).reshape(drawn * candidates, -1)
        samples = map(_new_sample, repeat(PixelSample), zip(
            candidate_numbers[:drawn * candidates].tolist(), repeat(row),
            cols.repeat(candidates).tolist(), chans.repeat(candidates).tolist(),
            run_values, run_probs))
        places = ((chans * height + row) * width + cols)[:, None] + image_starts
        writes = map(setitem, repeat(images), places.ravel().tolist(), run_values)
        return map(_second, zip(writes, samples, strict=True)), run_values

    rows = [(row, columns, np.array([(col, channel) for col in columns
                                     for channel in range(channels)]))
            for row, columns in _unknown_columns(task).items()]
    for index, (row, columns, order) in enumerate(rows):
        if not stepper.shared:
            yield from _rows_by_chunks(stepper, rows[index:], stream)
            return
        stepper.begin_row(row)
        done = 0
        start = (0, 0)  # the kernel gives the known columns on the way their stack only
        while done < len(order):
            values, probs, drawn = stepper.sample_run(row, *start, columns[-1])
            samples, run_values = stream(row, order[done:done + drawn], values, probs)
            yield from samples
            done += drawn
            col, channel = order[done - 1].tolist()
            if stepper.shared and len(set(run_values[-candidates:])) > 1:
                stepper.write(col, channel, values[:, col, channel])  # they split here
            # Where the next run starts: after the last value drawn (known columns on the
            # way get their horizontal stack in the kernel).
            start = (col, channel + 1) if channel + 1 < channels else (col + 1, 0)


def _chunks(batch: int) -> list[tuple[int, int]]:
    """The candidate states' chunks for whole-row jobs: the kernels' groups (each weight
    loaded once for the group; 9 candidates: 4 and 5, see kernels.group_size), or one share
    per core where there are fewer groups than that (2 candidates on two cores: 1 and 1)."""
    groups, first = [], 0
    while first < batch:
        groups.append((first, first + kernels.group_size(batch - first)))
        first = groups[-1][1]
    return groups if len(groups) >= min(batch, cores()) else _share_bounds(batch)


def _rows_by_chunks(stepper: GatedStepper, rows, stream) -> Iterator[PixelSample]:
    """Rows once every candidate has its own state: each row a job (RowJob) run chunk
    by chunk (_chunks), the chunks of a row on the calling thread and the helper threads at
    once (_RowsAhead). The calling thread also streams each row once all its chunks are
    done, while the helpers go on with the next: the stream, all Python, costs no core's
    compute, and whichever thread is free takes the next chunk, so a core that runs slower
    for a while (this machine's do) gets less of the work."""
    jobs = [stepper.start_row(row, columns[-1]) for row, columns, _ in rows]
    chunks = _chunks(stepper.batch)
    if len(chunks) == 1 or cores() == 1:  # all on this thread, without handing rows over
        for (row, _, order), job in zip(rows, jobs, strict=True):
            for chunk in chunks:
                job(*chunk)
            yield from stream(row, order, job.values, job.probs)[0]
        return
    ahead = _RowsAhead(jobs, chunks)
    try:
        for index, (row, _, order) in enumerate(rows):
            ahead.finish_row(index)
            yield from stream(row, order, jobs[index].values, jobs[index].probs)[0]
            ahead.streamed(index + 1)
    finally:  # the arrays must not change under a helper still at work
        ahead.stop()


class _RowsAhead:
    """Chunks of the candidates taken through a completion's rows by the calling thread and
    helper threads. A chunk's rows are computed in order, one thread at a time; no row
    starts before the one LEAD rows above it has been streamed, so nothing runs more than
    one row past the row streaming (stopping the stream wastes at most that). A helper's
    task never waits: with nothing to take it ends, and the calling thread starts another
    when there is (the helper threads serve every completion running)."""

    LEAD = 2

    def __init__(self, jobs: list[RowJob], chunks: list[tuple[int, int]]):
        self.jobs, self.chunks = jobs, chunks
        self.changed = threading.Condition()
        self.next_row = [0] * len(chunks)  # per chunk, the next row (index into jobs) to do
        self.busy = [False] * len(chunks)
        self.rows_streamed = 0
        self.helpers = cores() - 1
        self.running = 0  # helper tasks started and not yet ended
        self.error = None
        self.stopped = False
        with self.changed:
            self._start_helpers()

    def _available(self) -> list[int]:
        """The chunks whose next row may start now (lowest row first)."""
        limit = min(self.rows_streamed + self.LEAD, len(self.jobs))
        free = [c for c, row in enumerate(self.next_row) if not self.busy[c] and row < limit]
        return sorted(free, key=self.next_row.__getitem__)

    def _start_helpers(self) -> None:  # with self.changed held
        wanted = min(self.helpers, len(self._available()))
        while self.running < wanted and not self.stopped:
            self.running += 1
            _helper_threads().submit(self._help)

    def _take(self) -> int | None:  # with self.changed held
        available = self._available()
        if not available:
            return None
        self.busy[available[0]] = True
        return available[0]

    def _run(self, chunk: int) -> None:
        """Chunk `chunk`'s next row (taken with _take); counted done afterwards."""
        try:
            self.jobs[self.next_row[chunk]](*self.chunks[chunk])
        except BaseException as error:
            with self.changed:
                self.busy[chunk] = False
                self.error = self.error or error
                self.changed.notify_all()
            raise
        with self.changed:
            self.next_row[chunk] += 1
            self.busy[chunk] = False
            self.changed.notify_all()

    def _help(self) -> None:
        try:
            while True:
                with self.changed:
                    chunk = None if self.stopped or self.error else self._take()
                    if chunk is None:
                        return
                try:
                    self._run(chunk)
                except BaseException:  # handed to the calling thread (self.error)
                    return
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def finish_row(self, index: int) -> None:
        """Until every chunk has done row `index`, taking chunks on this thread meanwhile;
        re-raises a helper's error."""
        while True:
            with self.changed:
                if self.error is not None:
                    raise self.error
                if min(self.next_row) > index:
                    return
                chunk = self._take()
                if chunk is None:  # the rest of the row is at work on the helpers
                    self.changed.wait()
                    continue
            self._run(chunk)
            with self.changed:
                self._start_helpers()

    def streamed(self, rows: int) -> None:
        with self.changed:
            self.rows_streamed = rows
            self._start_helpers()

    def stop(self) -> None:
        """No more rows; returns once every helper task has ended."""
        with self.changed:
            self.stopped = True
            self.changed.wait_for(lambda: self.running == 0)


def _gated_steps_in_order(stepper: GatedStepper, task: SamplingTask) -> Iterator[PixelSample]:
    for row, columns in _unknown_columns(task).items():
        stepper.begin_row(row)
        computed = 0  # columns of this row whose horizontal stack is up to date
        for col in columns:
            if col > computed:  # known pixels since the last sample, batched
                stepper.horizontal(computed, col - 1)
            for channel in range(task.config.channels):
                # G and B see the values just drawn for this pixel: the column is redone.
                samples = task.sample(row, col, channel, stepper.column_logits(col, channel))
                stepper.write(col, channel, task.images[:, channel, row, col])
                yield from samples
            computed = col + 1


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


def _by_class(task: SamplingTask, steps_of) -> Iterator[PixelSample]:
    """The task's samples, from `steps_of(task)`, or where candidates differ in class (the
    gated stepper's state takes one class) from one part per class, merged: pixel-channel
    by pixel-channel, candidate by candidate, the order of a single run."""
    parts: dict = {}
    for k, label in enumerate(task.class_labels):
        parts.setdefault(label, []).append(k)
    if len(parts) == 1:
        yield from steps_of(task)
        return
    members = list(parts.values())
    streams = [steps_of(task.part(candidates)) for candidates in members]
    images, channels = task.images, task.config.channels
    pixel_channel: list = [None] * task.candidates
    try:
        for row, col in task.unknown:
            for channel in range(channels):
                for candidates, stream in zip(members, streams, strict=True):
                    for _ in candidates:
                        sample = next(stream)
                        k = candidates[sample.candidate]
                        pixel_channel[k] = sample._replace(candidate=k)
                        images[k, channel, row, col] = sample.value
                yield from pixel_channel
    finally:
        for stream in streams:
            stream.close()


BACKENDS = ("compiled", "numpy", "torch")


# How many warm-ups are loading or compiling the kernels now (see default_backend).
_warm_ups = 0
_warm_ups_lock = threading.Lock()


@contextlib.contextmanager
def _warming_up():
    global _warm_ups
    with _warm_ups_lock:
        _warm_ups += 1
    try:
        yield
    finally:
        with _warm_ups_lock:
            _warm_ups -= 1


def warm_up(model: ImageModel, device=None) -> None:
    """Compile the CPU kernels that completions with `model` on `device` (by default the
    best available) will use, now, so that the first completion does not wait for them.
    With Numba's on-disk cache filled this takes a fraction of a second; the first time
    (a new installation or build) it compiles, for seconds. Completions started meanwhile
    run on NumPy (see default_backend)."""
    device = pick_device(device)
    if not isinstance(model, GatedPixelCNN) or not _kernels_serve(device):
        return
    cfg = model.config
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    # One unknown pixel (the run kernel) below a finished row (the vertical stack's kernel),
    # wherever the image allows.
    known = np.ones((cfg.height, cfg.width), bool)
    known[min(1, cfg.height - 1), min(1, cfg.width - 1)] = False
    weights = prepared_weights(model, "compiled", device)
    # Two candidates (the helper threads too) of one class: a single stepper serves them.
    task = SamplingTask(model, image, known, candidates=2, seed=0, class_label=None)
    with _warming_up():
        for _ in _gated_steps(GatedStepper(weights, task, share=False), task):
            pass


def _kernels_serve(device: torch.device) -> bool:
    """Whether the compiled kernels are the gated model's backend on `device` (once warm)."""
    return device.type == "cpu" and kernels.AVAILABLE


def default_backend(device: torch.device) -> str:
    """The gated model's fastest backend on `device`, ready now.

    While a warm-up (on another thread: the app starts one when a model loads) is still
    loading or compiling the kernels, that is NumPy: at a new installation's first start
    the compilation takes 10-20 s, in which a completion would only wait, whereas NumPy
    completes a picture in a fraction of a second, from the same distributions."""
    if device.type != "cpu":
        return "torch"
    return "compiled" if _kernels_serve(device) and not _warm_ups else "numpy"


def fast_completion(model: ImageModel, image, known=None, *, device=None,
                    backend: str | None = None, **options) -> Completion:
    """Same inputs, same stream and the same samples as `reference_completion`, faster.

    `backend` chooses how the gated model's steps are computed: "compiled" (Numba kernels
    on the CPU), "numpy", or "torch" (any device); by default the fastest for the device.
    """
    task = SamplingTask(model, image, known, **options)
    device = pick_device(device)
    model = on_device(model, device)
    if isinstance(model, GatedPixelCNN):
        backend = backend or default_backend(device)
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
        if backend == "compiled" and not kernels.AVAILABLE:
            raise RuntimeError("The compiled backend needs Numba, which is not installed.")
        weights = prepared_weights(model, backend, device)
        steps = _by_class(task, lambda part: _gated_steps(GatedStepper(weights, part), part))
    elif isinstance(model, PixelCNN):
        steps = _windowed_steps(model, task, device)
    else:
        raise TypeError(f"No fast sampler for {type(model).__name__}.")
    return Completion(task, steps, device, "fast")
