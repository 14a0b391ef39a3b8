"""The learning-rate schedule, planned over the steps or the time budget, whichever ends first.

A cosine schedule over planned steps is cut short by a time budget at a high learning rate:
the weights a budget-cut run keeps are the noisy ones. Here the schedule has a position from
0 to 1, and each step moves it by the larger of two shares of what is left: one remaining
step's share, or the share of the remaining budget the step took. Without a budget that is
exactly step / total steps; with one, the run ends annealed when the budget does, however
fast or slow the host turns out to be (validations and compile time included).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "constant")


def warmup_steps(total_steps: int) -> int:
    """Linear warm-up over the first 2% of the planned steps, at most 500."""
    return max(1, min(500, total_steps // 50))


class BudgetSchedule:
    """Sets the optimizer's learning rate to lr x warm-up x cosine(position) each step."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, total_steps: int):
        if kind not in SCHEDULES:
            raise ValueError(f"Unknown schedule {kind!r}; expected one of {SCHEDULES}.")
        self.optimizer = optimizer
        self.kind = kind
        self.total_steps = total_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self.position = 0.0
        self._apply()

    def factor(self) -> float:
        if self.kind == "constant":
            return 1.0
        warmup = min(1.0, (self.step_count + 1) / warmup_steps(self.total_steps))
        return warmup * 0.5 * (1 + math.cos(math.pi * min(1.0, self.position)))

    def step(self, step_seconds: float = 0.0, seconds_left: float | None = None) -> None:
        """After an optimizer step that took `step_seconds` of wall time (since the one
        before), with `seconds_left` of the budget left after it (None: no budget)."""
        steps_left = max(1, self.total_steps - self.step_count)
        share = 1 / steps_left
        if seconds_left is not None:
            share = max(share, step_seconds / max(seconds_left + step_seconds, 1e-9))
        self.position = min(1.0, self.position + (1 - self.position) * min(1.0, share))
        self.step_count += 1
        self._apply()

    def set_position(self, position: float) -> None:
        """Take another's position (process 0's, in distributed training)."""
        self.position = position
        self._apply()

    def _apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> dict:
        return {"kind": self.kind, "total_steps": self.total_steps,
                "step_count": self.step_count, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        # A checkpoint from LambdaLR days kept only its step ("last_epoch"): the position of
        # a step-planned schedule is then step / total.
        self.step_count = int(state.get("step_count", state.get("last_epoch", 0)))
        self.position = float(state.get("position", self.step_count / max(1, self.total_steps)))
        self._apply()
