"""p(class | drawing) for the app's "Looks like" panel: the exact pass, or a compiled one
where timing shows it is faster.

`model.posterior` computes the posterior exactly, in fp32, running only the prefix's rows;
a completion's "auto" class always uses it. The panel recomputes the posterior again and
again while a person draws, so there a few hundredths of a nat are worth trading for speed:
on a CPU with native bf16 (AVX-512 BF16 or AMX), torch.compile of the forward pass under
bf16 autocast, with the weights frozen into the compiled code and the gates written with
exp (`ImageModel.for_compiled_inference`), runs the ten classes of a 12 x 64 digit model
several times faster than the eager fp32 pass (docs/performance.md).

A `PosteriorScorer` starts exact. `prepare()` (the app calls it in a thread of its own once
the panel's posterior has been slow) compiles one fixed shape, every class and every row,
so one compile serves every drawing (rows below the prefix cost time but change nothing:
the prefix's logits never depend on them), times it against the exact pass, and keeps the
faster. Where compiling cannot pay or cannot work, it stays exact: the exact pass already
takes under `WORTH_COMPILING_S`, the model is not on the CPU, the process is a frozen
(PyInstaller) app, whose bundle has no compiler and whose executable must not be started
as inductor's compile worker, or the compile fails (no C++ compiler or Python headers).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import posterior
from .base import ImageModel
from .devices import bf16_is_native

WORTH_COMPILING_S = 0.02  # an exact pass faster than this leaves nothing worth 10-20 s of compile
TIMED_RUNS = 5

# Inductor settings for the compiled pass: frozen weights (folded masks, prepacked oneDNN
# convolutions) and materialised intermediate sums (otherwise each layer re-adds every
# earlier residual: measured 15% slower), compiled in this process (no worker pool).
COMPILE_SETTINGS = {
    "freezing": True,
    "realize_reads_threshold": 1,
    "realize_acc_reads_threshold": 2,
    "realize_cpu_acc_reads_threshold": 2,
    "compile_threads": 1,
}


def uniform(model: ImageModel) -> np.ndarray:
    k = model.config.num_classes
    return np.full(k, 1.0 / k)


@dataclass(frozen=True)
class CompiledPass:
    """The logits of every class and every row of an image, compiled for the CPU (where the
    copy it runs lives, whatever device the model moves to later)."""

    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast: torch.dtype | None

    def log_likelihoods(self, model: ImageModel, values: np.ndarray,
                        prefix: np.ndarray) -> np.ndarray:
        x, labels = posterior.one_image_per_class(model, values, torch.device("cpu"))
        with torch.inference_mode(), autocast_to(self.autocast):
            logits = self.run(x, labels)
        return posterior.prefix_log_likelihoods(model, logits, x, prefix)


def compile_pass(model: ImageModel, autocast: torch.dtype | None,
                 values: np.ndarray) -> CompiledPass:
    """Compiled (and run once) here, under COMPILE_SETTINGS, not at the first drawing."""
    import torch._inductor.config as inductor_config

    settings = {k: v for k, v in COMPILE_SETTINGS.items() if hasattr(inductor_config, k)}
    run = torch.compile(model.for_compiled_inference().top_rows_logits, dynamic=False)
    x, labels = posterior.one_image_per_class(model, values, torch.device("cpu"))
    with inductor_config.patch(settings), torch.inference_mode(), autocast_to(autocast):
        run(x, labels)
    return CompiledPass(run, autocast)


class PosteriorScorer:
    """p(class | the known pixels before the first unknown one), callable from any thread."""

    def __init__(self, model: ImageModel):
        self._model = weakref.ref(model)  # `scorer_for` must not keep a model alive
        self.engine = "exact fp32"
        self.reason = "not measured"
        self.timings: dict[str, float] = {}  # engine -> median seconds of a whole image
        self._compiled: CompiledPass | None = None
        self._prepared = threading.Lock()
        self._done = False
        self._claimed = False

    @property
    def model(self) -> ImageModel:
        model = self._model()
        if model is None:
            raise ReferenceError("The model of this posterior scorer no longer exists.")
        return model

    def claim(self) -> bool:
        """True once: for whoever takes on `prepare()` (the app's panel, in a thread of its
        own); False to everyone after."""
        with _scorers_lock:
            claimed, self._claimed = self._claimed, True
        return not claimed

    def __call__(self, image, known=None) -> np.ndarray:
        compiled = self._compiled
        if compiled is None:
            return posterior.class_posterior(self.model, image, known)
        values, prefix = posterior.scoring_inputs(self.model, image, known)
        if not prefix.any():
            return uniform(self.model)
        return posterior.normalised(compiled.log_likelihoods(self.model, values, prefix))

    def prepare(self) -> str:
        """Compile and time once (later calls return at once); returns why the engine is the
        one it is. Until it returns, calls take the exact pass."""
        with self._prepared:
            if not self._done:
                self.reason = self._choose()
                self._done = True
        return self.reason

    def _choose(self) -> str:
        model = self.model
        image = posterior.probe_drawing(model.config)
        if next(model.parameters()).device.type != "cpu":
            return "exact: the model runs on an accelerator"
        if getattr(sys, "frozen", False):
            return "exact: a packaged app does not compile"
        exact = median_seconds(lambda: posterior.class_posterior(model, image))
        self.timings["exact fp32"] = exact
        if exact < WORTH_COMPILING_S:
            return f"exact: {exact * 1000:.0f} ms leaves nothing worth compiling"
        bf16 = bf16_is_native(torch.device("cpu"))
        name = f"compiled {'bf16' if bf16 else 'fp32'}"
        values, prefix = posterior.scoring_inputs(model, image)
        try:
            compiled = compile_pass(model, torch.bfloat16 if bf16 else None, values)
            fast = median_seconds(lambda: compiled.log_likelihoods(model, values, prefix))
        except Exception as error:  # noqa: BLE001 - no C++ compiler, headers, ...
            first_line = str(error).splitlines()[0][:120] if str(error) else ""
            return f"exact: compiling failed ({type(error).__name__}: {first_line})"
        self.timings[name] = fast
        if fast >= exact:
            return f"exact: {exact * 1000:.0f} ms, {name} {fast * 1000:.0f} ms"
        self.engine = name
        self._compiled = compiled
        return f"{name}: {fast * 1000:.0f} ms, exact {exact * 1000:.0f} ms"


def autocast_to(dtype: torch.dtype | None):
    return contextlib.nullcontext() if dtype is None else torch.autocast("cpu", dtype)


def median_seconds(run: Callable[[], object], runs: int = TIMED_RUNS) -> float:
    run()  # the first run starts threads and allocators: not counted
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


_scorers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_scorers_lock = threading.Lock()


def scorer_for(model: ImageModel) -> PosteriorScorer:
    """The one scorer of this model object (made on first use, exact until prepared)."""
    with _scorers_lock:
        scorer = _scorers.get(model)
        if scorer is None:
            scorer = _scorers[model] = PosteriorScorer(model)
        return scorer
