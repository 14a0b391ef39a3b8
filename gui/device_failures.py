"""When a completion fails on its device: whether to try again on the CPU, and what to say.

A completion that fails on a GPU (out of memory, or another error of the device itself) is
run again from the beginning on the CPU with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: by then it is loaded, since the error came from a
# completion (the window is shown before torch is imported).


def describe_device(device: torch.device) -> str:
    """A short name for the status bar: "CPU", "CUDA", "MPS"."""
    return device.type.upper()


def is_out_of_memory(error: BaseException) -> bool:
    import torch  # loaded by now: the error came from a completion

    return (isinstance(error, torch.cuda.OutOfMemoryError)
            or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower()))


def is_device_failure(error: BaseException) -> bool:
    """Whether an error came from the accelerator itself (its memory, driver or kernels),
    so that the same completion may well succeed on the CPU."""
    import torch

    if is_out_of_memory(error) or isinstance(error, getattr(torch, "AcceleratorError", ())):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        name in text for name in ("cuda", "cudnn", "cublas", "mps", "metal"))


def failure_message(error: BaseException, device_name: str | None = None) -> str:
    """What went wrong, in a sentence a user can act on."""
    detail = str(error) or type(error).__name__
    if is_out_of_memory(error):
        return (f"Completion failed: {device_name or 'the device'} ran out of memory. "
                f"Try fewer candidates. ({detail})")
    return f"Completion failed: {detail}"


def fallback_reason(error: BaseException, device_name: str) -> str:
    """Why a completion left its device, for the status bar: "CUDA ran out of memory"."""
    if is_out_of_memory(error):
        return f"{device_name} ran out of memory"
    return f"{device_name} failed ({str(error) or type(error).__name__})"


@dataclass(frozen=True)
class FellBack:
    """In the sample buffer: the run failed on its device and starts over on the CPU;
    every sample before this marker is void."""

    reason: str  # "CUDA ran out of memory"

    @property
    def message(self) -> str:
        return f"{self.reason}; completing on the CPU instead."


def release_device_memory(device: torch.device) -> None:
    """Hand the blocks PyTorch cached on a failed device back: after running out of memory
    they only get in the way of whatever runs there next."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()
