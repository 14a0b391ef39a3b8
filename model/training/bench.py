"""Time the fast sampler against the reference on the same task.

    pixelcnn-studio bench [--model NAME_OR_PATH] [--candidates N] [--device cpu|cuda|mps]
                          [--repeats R] [--reference-repeats R] [--json]

Default task: the app's default model (or, before one ships, a gated model of the shipped
size with random weights), a full 28x28 image with nothing known, one candidate. Prints the
median time of each sampler, the speed-up, whether the two gave identical samples for the
same seed, and the largest difference between their per-pixel probabilities when both see
the same images. With several candidates the fast sampler's N-candidate runs alternate with
one-candidate runs (seeds 0, 1, ...), and it also prints how many times one candidate's time
the N take (`times_one`).

`--core-scaling` instead measures how many times one core's work this machine's cores do at
once (the compiled kernels on one thread, then on every core): N candidates dealt out over
the cores can never beat that, and on a shared host it changes from minute to minute.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import threading
import time

import numpy as np
import torch

from ..devices import completion_device
from ..distributions import probabilities
from ..fast import warm_up
from ..gated import GatedPixelCNN
from ..io import build_model, load_model
from ..registry import DEFAULT_MODEL, SHIPPED_CONFIG, bundled_models, resolve_model
from ..sampling import complete
from ..task import DEVICES, SamplingTask
from .evaluate import positive_int


def benchmark_model(name: str | None):
    """The model to time and a label for it."""
    if name is None and DEFAULT_MODEL not in bundled_models():
        torch.manual_seed(0)
        return build_model(SHIPPED_CONFIG).eval(), "random-weights gated (shipped size)"
    name = name or DEFAULT_MODEL
    return load_model(resolve_model(name)), name


def time_sampler(model, sampler, known, candidates, device, repeats, seed=0):
    """Median seconds of `repeats` full completions, and the last completion's samples."""
    cfg = model.config
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    seconds, samples, completion = [], [], None
    for _ in range(repeats):
        start = time.perf_counter()
        # No class: the samplers' own speed (candidates of several classes, as "auto" draws
        # them for a class-conditional model, run as one part per class).
        completion = complete(model, image, known, sampler=sampler, candidates=candidates,
                              seed=seed, device=device, class_label=None)
        samples = list(completion)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), samples, completion.images


def time_against_one(model, known, candidates, device, repeats):
    """Median seconds of an N-candidate and a one-candidate completion, run alternately so
    that both see the same machine: on a shared host the speed drifts from minute to minute
    by more than the difference being measured. Seeds 0, 1, ...; also returns the samples
    and images of the N-candidate run with seed 0 (what the reference is compared with)."""
    seconds = {candidates: [], 1: []}
    for seed in range(repeats):
        for n in seconds:
            took, samples, images = time_sampler(model, "fast", known, n, device, 1, seed)
            seconds[n].append(took)
            if seed == 0 and n == candidates:
                first = samples, images
    return statistics.median(seconds[candidates]), statistics.median(seconds[1]), *first


def max_prob_difference(model, samples, images, device) -> float:
    """How far the streamed distributions are from the full network's on the same images
    (what the reference computes for each pixel: the model is causal)."""
    cfg = model.config
    with torch.no_grad():
        logits = model(torch.from_numpy(images).long().to(device)).double().cpu().numpy()
    worst = 0.0
    for s in samples:
        at = logits[s.candidate, s.channel, ..., s.row, s.col].reshape(1, -1)
        if cfg.distribution == "bernoulli":
            at = np.concatenate([np.zeros((1, 1)), at], axis=1)
        expected = probabilities(at, "categorical", 1.0)[0]
        worst = max(worst, float(np.abs(expected - s.probs).max()))
    return worst


def time_hole_aware(model, candidates: int, device, repeats: int) -> dict:
    """Median seconds of hole-aware completion (model/rerank.py) of a central hole half the
    image's size: N candidates sampled as one batch, then scored in one batched pass."""
    from ..rerank import rank

    cfg = model.config
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    known = np.ones((cfg.height, cfg.width), bool)
    top, left = cfg.height // 4, cfg.width // 4
    known[top:top + cfg.height // 2, left:left + cfg.width // 2] = False
    sampling, scoring = [], []
    for seed in range(repeats + 1):  # the first run compiles the kernels: not counted
        start = time.perf_counter()
        images = complete(model, image, known, candidates=candidates, seed=seed,
                          device=device, class_label=None).run()
        middle = time.perf_counter()
        rank(model, images, known, seed=seed)
        if seed:
            sampling.append(middle - start)
            scoring.append(time.perf_counter() - middle)
    total = [a + b for a, b in zip(sampling, scoring, strict=True)]
    return {"candidates": candidates, "unknown_pixels": int((~known).sum()),
            "seconds": round(statistics.median(total), 4),
            "sampling_seconds": round(statistics.median(sampling), 4),
            "scoring_seconds": round(statistics.median(scoring), 4)}


def time_core_scaling(model, repeats: int, rounds: int = 3) -> dict:
    """How much of a speed-up this machine's cores give the compiled kernels: the vertical
    stack of every row of four candidates, `repeats` times, on one thread, then as much on
    each of `cores()` threads at once (each its own candidates; the kernels release the GIL,
    so nothing else is shared); the scaling is how many times one thread's work the threads
    did in the same time (2.0 for two full cores). Several candidates, dealt out over the
    cores, cannot go faster than the cores scale. Alternating rounds, the median."""
    from ..fast import kernels
    from ..fast.stepper import GatedStepper
    from ..fast.threads import cores
    from ..fast.weights import prepared_weights

    if not kernels.AVAILABLE:
        raise SystemExit("The core-scaling measurement runs the compiled kernels: install Numba.")
    cfg = model.config
    image = np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8)
    weights = prepared_weights(model, "compiled", torch.device("cpu"))

    def vertical_stacks():
        task = SamplingTask(model, image, np.zeros((cfg.height, cfg.width), bool), candidates=4,
                            class_label=None)
        stepper = GatedStepper(weights, task, share=False)
        for _ in range(repeats):
            kernels.vertical_share(0, 4, 0, cfg.height, *stepper.vertical_args)

    threads = cores()
    one, together, scaling = [], [], []
    vertical_stacks()  # compiled (or loaded) before timing
    for _ in range(rounds):
        start = time.perf_counter()
        vertical_stacks()
        one.append(time.perf_counter() - start)
        workers = [threading.Thread(target=vertical_stacks) for _ in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        together.append(time.perf_counter() - start)
        scaling.append(threads * one[-1] / together[-1])
    return {"cores": threads, "one_thread_seconds": round(statistics.median(one), 4),
            "all_threads_seconds": round(statistics.median(together), 4),
            "scaling": round(statistics.median(scaling), 2)}


def time_posterior(model, repeats: int) -> dict:
    """Median seconds of p(class | known pixels) of a digit-like image, every pixel known and
    with its bottom half unknown: exactly (model/posterior.py, only the rows above the
    unknown ones are run), and as the app's Looks-like panel computes it
    (model/posterior_scorer.py, prepared first: compiled where that was timed faster)."""
    from ..posterior import class_posterior, probe_drawing
    from ..posterior_scorer import PosteriorScorer, median_seconds

    if not model.config.num_classes:
        raise SystemExit("--posterior needs a class-conditional model.")
    cfg = model.config
    image = probe_drawing(cfg)
    top_half = np.ones((cfg.height, cfg.width), bool)
    top_half[cfg.height // 2:] = False
    scorer = PosteriorScorer(model)
    started = time.perf_counter()
    reason = scorer.prepare()
    result = {"classes": cfg.num_classes, "panel_engine": scorer.engine, "panel_reason": reason,
              "panel_prepare_seconds": round(time.perf_counter() - started, 1)}
    ways = {"": lambda known: class_posterior(model, image, known),
            "panel_": lambda known: scorer(image, known)}
    for prefix, posterior in ways.items():
        for name, known in (("whole_image", None), ("top_half", top_half)):
            seconds = median_seconds(functools.partial(posterior, known), runs=repeats)
            result[f"{prefix}{name}_seconds"] = round(seconds, 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixelcnn-studio bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"bundled name or path (default: {DEFAULT_MODEL})")
    parser.add_argument("--candidates", type=positive_int, default=1)
    parser.add_argument("--device", choices=DEVICES,
                        help="default (auto): the device a completion would choose, measured "
                             "fastest for the model")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="fast-sampler runs (median)")
    parser.add_argument("--reference-repeats", type=positive_int, default=3,
                        help="reference runs (median); each takes many seconds")
    parser.add_argument("--hole-aware", type=positive_int, metavar="N",
                        help="instead, time hole-aware completion of a central hole with N "
                             "candidates (sampling and the scoring pass; median of --repeats)")
    parser.add_argument("--core-scaling", action="store_true",
                        help="instead, measure how many times one core's work the cores do "
                             "at once (the compiled vertical stack, --repeats per thread)")
    parser.add_argument("--posterior", action="store_true",
                        help="instead, time the class posterior of a class-conditional model "
                             "(all classes in one pass; median of --repeats)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    model, label = benchmark_model(args.model)
    device = completion_device(model, args.device)  # what a completion would run on
    model = model.to(device)
    cfg = model.config
    if args.hole_aware:
        result = {"model": label, "device": device.type,
                  **time_hole_aware(model, args.hole_aware, device, args.repeats)}
        return show(result, args.json)
    if args.posterior:
        return show({"model": label, "device": device.type,
                     **time_posterior(model, args.repeats)}, args.json)
    known = np.zeros((cfg.height, cfg.width), bool)
    if args.core_scaling:
        if not isinstance(model, GatedPixelCNN) or device.type != "cpu":
            raise SystemExit("--core-scaling times the gated model's CPU kernels.")
        return show({"model": label, **time_core_scaling(model, args.repeats)}, args.json)
    # Untimed: compile the CPU kernels (cached on disk afterwards), start the helper threads
    # and the device up; otherwise the first timed run would pay for it.
    warm_up(model, device)
    complete(model, np.zeros((cfg.channels, cfg.height, cfg.width), np.uint8), known,
             device=device).run()
    if args.candidates > 1:  # timed alternately with one candidate, to compare the two
        fast_s, one_s, fast_samples, fast_images = time_against_one(
            model, known, args.candidates, device, args.repeats)
    else:
        fast_s, fast_samples, fast_images = time_sampler(
            model, "fast", known, 1, device, args.repeats)
    ref_s, _, ref_images = time_sampler(
        model, "reference", known, args.candidates, device, args.reference_repeats)
    result = {
        "model": label,
        "height": cfg.height,
        "width": cfg.width,
        "candidates": args.candidates,
        "device": device.type,
        "reference_seconds": round(ref_s, 4),
        "fast_seconds": round(fast_s, 4),
        "speedup": round(ref_s / fast_s, 1),
        "identical": bool(np.array_equal(fast_images, ref_images)),
        "max_prob_diff": max_prob_difference(model, fast_samples, fast_images, device),
        "fast_ms_per_pixel": round(1000 * fast_s / (cfg.height * cfg.width), 4),
    }
    if args.candidates > 1:  # the cost of the extra candidates
        result.update(one_candidate_seconds=round(one_s, 4), times_one=round(fast_s / one_s, 2))
    return show(result, args.json)


def show(result: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result))
        return 0
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
