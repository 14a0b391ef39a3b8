"""When a completion fails on its device: whether to try again on the CPU, and what to say.

A completion that fails on an accelerator is run again from the beginning on the CPU with the
same seed. The errors that count are told apart by their types, never by words in their
messages: PyTorch raises a RuntimeError (or a subclass: torch.OutOfMemoryError,
torch.AcceleratorError, NotImplementedError for an operator the device lacks) for whatever
goes wrong on a device, its memory, driver or kernels. So every RuntimeError on an
accelerator is retried on the CPU, except for the project's refusals of its input or of a
limit (ValueError, model.memory.MemoryLimitError among them), which the CPU would refuse
again. A real bug that raises a RuntimeError is retried too: it fails again on the CPU, and
is reported from there.
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
    """Whether a device (CUDA, MPS or another) ran out of memory."""
    import torch

    # torch.OutOfMemoryError names every device's from PyTorch 2.5 on; before, only CUDA's.
    return isinstance(error, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))


def is_device_failure(error: BaseException) -> bool:
    """Whether an error raised on an accelerator is worth a retry on the CPU: any
    RuntimeError (see the module's docstring), but not a refusal of the input or of a limit."""
    return isinstance(error, RuntimeError) and not isinstance(error, ValueError)


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
