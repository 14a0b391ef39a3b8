"""The arrays a stepper computes with: NumPy on the CPU, torch tensors on any device, one
interface for both."""

from __future__ import annotations

import numpy as np
import torch


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
