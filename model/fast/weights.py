"""The gated model's weights laid out for stepping: masks applied, (inputs, outputs), stacked
for the compiled kernels, prepared once per model, backend and device."""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..gated import GatedPixelCNN
from .arrays import NumpyArrays, TorchArrays


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
