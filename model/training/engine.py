"""How a training step runs: eager or torch.compile, fp32 or bf16 autocast, chosen by timing.

No choice can be assumed: on an Intel host with AMX, compiled bf16 trains a gated PixelCNN
about 3x faster than eager fp32; on an AMD host without native bf16, eager bf16 ran 2.6x
slower than fp32. So "auto" times a few real training steps of each candidate on the host at
hand (compile time included: it is spent from the run's budget) and keeps the fastest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..base import ImageModel
from ..devices import bf16_is_native
from ..distributions import nll_nats
from .evaluate import Float32Logits, UsageError

PRECISIONS = ("auto", "bf16", "fp32")
COMPILE_CHOICES = ("auto", "on", "off")
# Steps timed per candidate, after the warm-up steps that compile (or warm the allocator).
WARMUP_STEPS = 2
TIMED_STEPS = 4


@dataclass(frozen=True)
class Engine:
    compiled: bool
    precision: str  # "fp32" or "bf16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def __str__(self) -> str:
        return f"{'compiled' if self.compiled else 'eager'} {self.precision}"


def candidates(compile_choice: str, precision: str, device: torch.device) -> list[Engine]:
    """The engines worth timing. Explicit choices force themselves; "auto" precision leaves
    out bf16 where it is emulated (a sure loss not worth the compile time to confirm)."""
    if precision == "auto":
        precisions = ["fp32", "bf16"] if bf16_is_native(device) else ["fp32"]
    else:
        precisions = [precision]
    compiled = {"auto": [False, True], "on": [True], "off": [False]}[compile_choice]
    return [Engine(c, p) for c in compiled for p in precisions]


def scorer_for(model: ImageModel, engine: Engine,
               network: torch.nn.Module | None = None) -> Float32Logits:
    """The callable a training step runs: the model, or `network` wrapped around it (DDP),
    compiled or not, under its autocast. A compiled model shares the model's parameters, so
    checkpoints see no difference."""
    network = model if network is None else network
    network = torch.compile(network, dynamic=False) if engine.compiled else network
    return Float32Logits(network, engine.autocast_dtype, model.config)


def step_seconds(model: ImageModel, scorer: Float32Logits, x: torch.Tensor, labels,
                 steps: int) -> float:
    """Wall seconds for `steps` forward-backward-Adam steps on one batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-12)
    started = time.perf_counter()
    for _ in range(steps):
        loss = nll_nats(scorer, x, labels).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - started


def forced_scorer(model: ImageModel, engine: Engine, x: torch.Tensor, labels,
                  saved: dict) -> Float32Logits:
    """The scorer of the one engine asked for; a compiled one is tried on a step first, so
    that a host where torch.compile cannot build says so in a sentence, not a traceback."""
    scorer = scorer_for(model, engine)
    if engine.compiled:
        try:
            step_seconds(model, scorer, x, labels, 1)
        except Exception as error:  # noqa: BLE001 - whatever the compiler's failure is
            raise UsageError(
                f"torch.compile cannot train on this host ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}). It builds C++ code: install a C++ "
                "compiler and Python's headers (on Debian: g++ python3-dev), or train with "
                "--compile off (or auto, which keeps what works).") from error
        finally:
            model.load_state_dict(saved)
    return scorer


@dataclass
class Timing:
    engine: Engine
    images_per_second: float | None  # None: this engine failed to run here
    seconds: float  # spent timing it, compile included
    error: str = ""


def choose_engine(model: ImageModel, x: torch.Tensor, labels, engines: list[Engine],
                  say: Callable[[str], None] = print) -> tuple[Engine, Float32Logits, list]:
    """Time each engine on the batch (x, labels) and return the fastest with its scorer and
    every timing. The model's weights are restored afterwards: timing trains nothing."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if len(engines) == 1:
        return engines[0], forced_scorer(model, engines[0], x, labels, saved), []
    timings, scorers = [], {}
    for engine in engines:
        started = time.perf_counter()
        try:
            scorer = scorer_for(model, engine)
            step_seconds(model, scorer, x, labels, WARMUP_STEPS)
            seconds = step_seconds(model, scorer, x, labels, TIMED_STEPS)
            timing = Timing(engine, round(TIMED_STEPS * len(x) / seconds, 1),
                            round(time.perf_counter() - started, 1))
            scorers[engine] = scorer
        except Exception as error:  # noqa: BLE001 - e.g. no C compiler for torch.compile
            timing = Timing(engine, None, round(time.perf_counter() - started, 1),
                            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        timings.append(timing)
        say(f"  {engine}: " + (f"{timing.images_per_second:.1f} images/s"
                               if timing.images_per_second else f"failed ({timing.error})")
            + f", {timing.seconds:.1f} s to measure")
    model.load_state_dict(saved)
    working = [t for t in timings if t.images_per_second]
    if not working:
        raise RuntimeError("No training engine ran on this host: "
                           + "; ".join(f"{t.engine}: {t.error}" for t in timings))
    best = max(working, key=lambda t: t.images_per_second)
    return best.engine, scorers[best.engine], timings
