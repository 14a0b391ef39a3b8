"""Training on several processes with DistributedDataParallel, started by torchrun.

    torchrun --nproc_per_node 2 main.py train --data MNIST_DIR --name digits-ink

Every process runs the same command. They draw the same image order and the same dropped
labels from the same seeded streams, so each takes its own share of one global batch of
--batch-size images; DDP averages the gradients, so a step sees the global batch as a single
process would. Process 0 alone validates, checkpoints and writes the model and its card;
it also decides, each step, the schedule's position and whether to stop, which every
process then follows (clocks differ, and a process that stopped alone would hang the rest).
Gloo carries the gradients on the CPU, NCCL on CUDA (one GPU per process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writes(self) -> bool:
        """Only process 0 prints progress, validates and writes files."""
        return self.rank == 0

    def shard(self, tensor):
        """This process's share of a global batch (None stays None)."""
        if tensor is None or not self.distributed:
            return tensor
        return tensor[self.rank::self.size]

    def agree(self, values: list[float]) -> list[float]:
        """Process 0's values, on every process."""
        if not self.distributed:
            return values
        shared = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.broadcast(shared, src=0)
        return shared.tolist()

    def total(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over every process (each must call this at the same step)."""
        if self.distributed:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")

    def describe(self, batch_size: int) -> dict:
        return {"processes": self.size, "backend": self.backend,
                "global_batch_size": batch_size,
                "batch_size_per_process": -(-batch_size // self.size)}


def join(device: torch.device) -> World:
    """The world torchrun started this process in (WORLD_SIZE, RANK, LOCAL_RANK), joined;
    a plain one-process World when not started by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), backend)


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model as the training step runs it: DDP-wrapped across processes (which also
    copies process 0's weights to the others), the model itself otherwise."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def replica_difference(model: torch.nn.Module, world: World) -> float:
    """The largest difference between any process's weights and process 0's: 0.0 when the
    replicas stayed identical, as DDP promises."""
    if not world.distributed:
        return 0.0
    largest = torch.zeros((), dtype=torch.float64, device=world._device())
    for tensor in model.state_dict().values():
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        difference = (tensor.detach().double() - reference.double()).abs().max()
        largest = torch.maximum(largest, difference.to(largest.device))
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return largest.item()
