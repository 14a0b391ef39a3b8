"""GatedStepper: the gated model evaluated incrementally for a batch of candidates."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..task import SamplingTask
from . import kernels, layout
from .threads import _in_shares
from .weights import GatedWeights


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
                layout.VerticalState(self.vin_all, self.link_all),
                layout.VerticalWeights(c["khs"], c["ks"], c["cins"], c["v_weights"],
                                        self.v_biases, c["links"], self.h_biases),
                self.fast_tanh)
            task = self.task  # what kernels.sample_share takes after the row's known pixels
            self.compiled = (
                layout.RowState(self.hin_all, self.link_all, self.gated.reshape(batch, -1)),
                layout.RowWeights(c["cins"], c["kws"], c["h_weights"], c["res_weights"],
                                   c["res_biases"], *c["head"]),
                self.fast_tanh,
                layout.Drawing(task.config.distribution == "bernoulli", task.temperature,
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
