"""The fast sampler must compute the reference sampler's distributions, hence its samples:
given the same images it gives the same distributions, in float64 the very same samples (on
every backend, and with the compiled kernels' candidates taken in groups). Its candidates
share one computation until their samples differ, a known prefix costs one batched pass, and
stopping its stream stops its work."""

import numpy as np
import pytest
import torch

from conftest import tiny_model
from model import complete
from model.distributions import probabilities
from model.fast import BACKENDS, kernels
from model.fast import rows as fast_rows
from model.fast import threads as fast_threads

MASKS = ("hole", "bottom-half", "scattered", "nothing-known", "everything-known")
GATED_BACKENDS = [b for b in BACKENDS if b != "compiled" or kernels.AVAILABLE]


def known_mask(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    known = np.ones((height, width), bool)
    if kind == "hole":
        known[height // 4:height - 1, width // 4:width - 1] = False
    elif kind == "bottom-half":
        known[height // 2:] = False
    elif kind == "scattered":
        known = np.random.default_rng(seed).random((height, width)) < 0.5
    elif kind == "nothing-known":
        known[:] = False
    return known


def problem(seed=0, **model_options):
    model = tiny_model(seed, **model_options)
    cfg = model.config
    image = np.random.default_rng(seed).integers(
        0, cfg.levels, (cfg.channels, cfg.height, cfg.width))
    return model, image


def variants():
    """Architectures x colours x masks, each with its own size, temperature, class, batch."""
    rng = np.random.default_rng(7)
    for arch in ("gated", "pixelcnn"):
        for colours, distribution in ((1, "bernoulli"), (3, "categorical")):
            for kind in MASKS:
                height, width = [(5, 9), (8, 5), (7, 7), (6, 11)][rng.integers(4)]
                yield pytest.param(
                    dict(architecture=arch, channels=colours, distribution=distribution,
                         height=height, width=width, num_classes=3,
                         first_kernel_size=int(rng.choice([3, 5, 7])), layers=3),
                    kind,
                    dict(temperature=float(rng.choice([0.0, 0.7, 1.0, 1.6])),
                         candidates=int(rng.integers(1, 4)),
                         class_label=[None, 0, 2][rng.integers(3)]),
                    id=f"{arch}-C{colours}-{kind}-{height}x{width}",
                )


def backends_for(options):
    return GATED_BACKENDS if options["architecture"] == "gated" else [None]


@pytest.mark.parametrize(("model_options", "kind", "options"), list(variants()))
def test_fast_distributions_match_the_reference_given_the_same_images(
        model_options, kind, options):
    model, image = problem(**model_options)
    cfg = model.config
    known = known_mask(kind, cfg.height, cfg.width)
    for backend in backends_for(model_options):
        extra = {} if backend is None else {"backend": backend}
        completion = complete(model, image, known, seed=3, **options, **extra)
        samples = list(completion)
        assert len(samples) == completion.total == (~known).sum() * cfg.channels * options[
            "candidates"]
        # Teacher forcing: the model is causal, so one pass over the finished images gives
        # every distribution the reference sampler would have drawn from.
        labels = None if options["class_label"] is None else torch.tensor(
            [options["class_label"]] * options["candidates"])
        with torch.no_grad():
            logits = model(torch.from_numpy(completion.images).long(), labels).double()
        for s in samples:
            at = logits[s.candidate, s.channel, ..., s.row, s.col].numpy().reshape(1, -1)
            if cfg.distribution == "bernoulli":  # the logit of 1; 0 has logit 0
                at = np.concatenate([np.zeros((1, 1)), at], axis=1)
            if options["temperature"] == 0:
                # Greedy: the value picked is the best one, up to float32 rounding on a tie.
                assert s.probs[s.value] == 1.0
                assert at[0, s.value] >= at.max() - 1e-5
            else:
                expected = probabilities(at, "categorical", options["temperature"])[0]
                np.testing.assert_allclose(s.probs, expected, atol=1e-5, err_msg=str(backend))
        assert (completion.images[:, :, known] == image[:, known]).all()


@pytest.mark.parametrize(("model_options", "kind", "options"), list(variants()))
def test_in_float64_both_samplers_give_identical_samples(model_options, kind, options):
    model, image = problem(**model_options)
    model = model.double()
    cfg = model.config
    known = known_mask(kind, cfg.height, cfg.width, seed=1)
    reference = complete(model, image, known, sampler="reference", seed=9, **options)
    expected = list(reference)
    for backend in backends_for(model_options):
        extra = {} if backend is None else {"backend": backend}
        fast = complete(model, image, known, sampler="fast", seed=9, **options, **extra)
        got = list(fast)
        assert [s[:5] for s in got] == [s[:5] for s in expected], backend
        assert np.array_equal(fast.images, reference.images)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-12)


def test_a_fully_known_prefix_costs_one_batched_pass_not_one_per_pixel(monkeypatch):
    from model.fast.stepper import GatedStepper

    model, image = problem(height=10, width=6)
    known = known_mask("bottom-half", 10, 6)
    calls = []
    original = GatedStepper._vertical
    monkeypatch.setattr(GatedStepper, "_vertical",
                        lambda self, r0, r1, *chunk: calls.append((r0, r1))
                        or original(self, r0, r1, *chunk))
    completion = complete(model, image, known)
    next(completion)
    assert calls == [(0, 5)]  # the five known rows, together


def column_batches(monkeypatch) -> list[int]:
    """For each value the gated stepper computed, how many candidate states it ran on.
    (The NumPy and torch backends compute a column per value; the compiled one samples a
    row's values per call, fewer when the candidates split on the way, and once each has
    its own state a row per job.)"""
    from model.fast.stepper import GatedStepper, RowJob

    batches = []
    original = GatedStepper.column_logits
    monkeypatch.setattr(GatedStepper, "column_logits", lambda self, col, ch:
                        batches.append(self.batch) or original(self, col, ch))
    original_run = GatedStepper.sample_run

    def sample_run(self, *args):
        batch = self.batch  # a split after the run gives the next run more states
        values, probs, drawn = original_run(self, *args)
        batches.extend([batch] * drawn)
        return values, probs, drawn

    monkeypatch.setattr(GatedStepper, "sample_run", sample_run)
    original_job = RowJob.__call__

    def row_job(self, first, end):  # a whole row, once every candidate has its own state
        if first == 0:  # (its first share)
            unknown = int((~self.stepper.known[self.row]).sum())
            batches.extend([self.stepper.batch] * unknown * self.stepper.shape[1])
        return original_job(self, first, end)

    monkeypatch.setattr(RowJob, "__call__", row_job)
    return batches


@pytest.mark.parametrize("backend", GATED_BACKENDS)
def test_candidates_share_one_computation_until_their_samples_differ(monkeypatch, backend):
    batches = column_batches(monkeypatch)
    model, image = problem(height=6, width=7)
    known = known_mask("bottom-half", 6, 7)
    completion = complete(model, image, known, candidates=4, seed=5, backend=backend)
    list(completion)
    unknown = completion.images[:, 0, ~known]  # (candidates, pixels) in raster order
    split = np.nonzero((unknown != unknown[0]).any(axis=0))[0][0]
    assert split > 0  # this seed's candidates agree on their first pixels
    # One state up to the first pixel drawn differently, then one per candidate.
    assert batches == [1] * (split + 1) + [4] * (unknown.shape[1] - split - 1)


def test_greedy_candidates_never_split(monkeypatch):
    batches = column_batches(monkeypatch)
    model, image = problem()
    completion = complete(model, image, known_mask("hole", 6, 7), candidates=5,
                          temperature=0)
    list(completion)
    assert set(batches) == {1}
    assert (completion.images == completion.images[0]).all()


@pytest.mark.parametrize("backend", GATED_BACKENDS)
def test_stopping_the_fast_stream_stops_the_work(monkeypatch, backend):
    computed = column_batches(monkeypatch)
    model, image = problem()
    completion = complete(model, image, known_mask("nothing-known", 6, 7), backend=backend)
    next(completion), next(completion)
    images = completion.images.copy()
    completion.close()
    assert list(completion) == []
    # The two values streamed; the compiled kernels sample a row per call: its 7 values.
    assert len(computed) == (7 if backend == "compiled" else 2)
    # What was computed but not streamed is not in the images either.
    assert (images[0, 0, 0, 2:] == 0).all() and (images[0, 0, 1:] == 0).all()


@pytest.mark.skipif(not kernels.AVAILABLE, reason="Numba is not installed")
@pytest.mark.parametrize("channels, distribution", [(1, "bernoulli"), (3, "categorical")])
@pytest.mark.parametrize("candidates", [5, 6])
def test_candidates_taken_in_groups_draw_the_reference_samples(
        monkeypatch, channels, distribution, candidates):

    # On one core the kernels take 5 candidates as one group of five (each weight loaded
    # once for the five), and 6 as four and two.
    monkeypatch.setattr(fast_threads, "cores", lambda: 1)
    chunks = [fast_rows._chunks(n) for n in (5, 6, 9)]
    assert chunks == [[(0, 5)], [(0, 4), (4, 6)], [(0, 4), (4, 9)]]
    model, image = problem(3, channels=channels, distribution=distribution, height=6, width=7,
                           num_classes=2)
    model = model.double()
    known = known_mask("bottom-half", 6, 7)
    options = dict(candidates=candidates, seed=4, temperature=1.3, class_label=1)
    reference = complete(model, image, known, sampler="reference", **options)
    expected = list(reference)
    got = list(complete(model, image, known, backend="compiled", **options))
    assert [s[:5] for s in got] == [s[:5] for s in expected]
    assert len({s.value for s in got}) > 1  # not a trivial all-alike completion
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-12)


def test_unknown_backend_is_rejected():
    model, image = problem()
    with pytest.raises(ValueError, match="Unknown backend 'fortran'"):
        complete(model, image, None, backend="fortran")
