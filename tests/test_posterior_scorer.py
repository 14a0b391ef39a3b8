"""model.posterior_scorer: the Looks-like panel's posterior is the exact one until a compiled
pass has been timed faster, then agrees with it to within bf16's rounding; wherever a
compile cannot pay or cannot work, it stays exact and says why."""

import gc
import threading
import weakref

import numpy as np
import pytest
import torch

from conftest import needs_a_cpp_compiler, tiny_model
from model import posterior_scorer
from model.posterior import class_posterior
from model.posterior_scorer import PosteriorScorer, scorer_for

pytestmark = pytest.mark.usefixtures("one_thread")


def digit_like(model):
    c = model.config
    rng = np.random.default_rng(1)
    return rng.integers(0, c.levels, (c.channels, c.height, c.width))


def top_half(model):
    known = np.ones((model.config.height, model.config.width), bool)
    known[model.config.height // 2:] = False
    return known


def centre_hole(model):
    known = np.ones((model.config.height, model.config.width), bool)
    known[2:4, 2:5] = False
    return known


def timed(monkeypatch, exact: float, compiled: float):
    """median_seconds reports `exact` for the exact pass and `compiled` for the compiled one
    (they are timed in that order), after running each once for real."""
    answers = iter([exact, compiled])

    def fake_median_seconds(run):
        run()
        return next(answers)
    monkeypatch.setattr(posterior_scorer, "median_seconds", fake_median_seconds)


def test_the_gate_through_exp_is_the_gate_without_overflow():
    from model.gated import gate, gate_through_exp

    x = torch.cat([torch.linspace(-120, 120, 4001), torch.randn(4001)]).reshape(1, 2, -1)
    torch.testing.assert_close(gate_through_exp(x), gate(x), rtol=0, atol=2e-7)
    assert torch.isfinite(gate_through_exp(x)).all()


@pytest.mark.parametrize("arch", ["gated", "pixelcnn"])
def test_the_copy_for_compiled_inference_computes_the_same_logits(arch):
    model = tiny_model(architecture=arch, num_classes=4, distribution="categorical", levels=3,
                       channels=3, hidden_channels=6).train()
    copy = model.for_compiled_inference()
    assert copy is not model and not copy.training and model.training
    assert all(not hasattr(layer, "gate") or layer.gate.__name__ == "gate"
               for layer in getattr(model, "layers", []))  # this model is left as it was
    x = torch.from_numpy(digit_like(model))[None].expand(4, -1, -1, -1)
    with torch.inference_mode():
        torch.testing.assert_close(copy(x, torch.arange(4)), model.eval()(x, torch.arange(4)),
                                   rtol=1e-5, atol=1e-5)


def test_an_unprepared_scorer_is_the_exact_posterior():
    model = tiny_model(num_classes=4)
    image = digit_like(model)
    scorer = PosteriorScorer(model)
    for known in (None, top_half(model), centre_hole(model)):
        np.testing.assert_array_equal(scorer(image, known), class_posterior(model, image, known))


def test_a_fast_exact_pass_is_not_worth_compiling(monkeypatch):
    model = tiny_model(num_classes=4)
    timed(monkeypatch, exact=0.001, compiled=0.0)

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled although the exact pass is fast")
    monkeypatch.setattr(torch, "compile", no_compile)
    scorer = PosteriorScorer(model)
    reason = scorer.prepare()
    assert reason == "exact: 1 ms leaves nothing worth compiling"
    assert scorer.engine == "exact fp32" and scorer.timings == {"exact fp32": 0.001}


@needs_a_cpp_compiler
@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_a_compiled_pass_timed_faster_is_kept_and_agrees_with_the_exact_one(
        monkeypatch, distribution):
    model = tiny_model(num_classes=4, distribution=distribution)
    monkeypatch.setattr(posterior_scorer, "WORTH_COMPILING_S", 0.0)
    timed(monkeypatch, exact=0.2, compiled=0.05)
    scorer = PosteriorScorer(model)
    reason = scorer.prepare()
    assert scorer.engine.startswith("compiled") and reason.startswith(scorer.engine), reason
    assert scorer.timings == {"exact fp32": 0.2, scorer.engine: 0.05}
    rng = np.random.default_rng(2)
    for _ in range(4):
        image = rng.integers(0, model.config.levels, (1, 6, 7))
        for known in (None, top_half(model), centre_hole(model)):
            exact = class_posterior(model, image, known)
            fast = scorer(image, known)
            np.testing.assert_allclose(fast.sum(), 1.0)
            np.testing.assert_allclose(fast, exact, atol=0.02)  # bf16 rounding at most
    nothing_known = np.zeros((6, 7), bool)
    np.testing.assert_array_equal(scorer(image, nothing_known), [0.25] * 4)
    assert scorer.prepare() == reason  # prepared once


@needs_a_cpp_compiler
def test_a_compiled_pass_no_faster_is_dropped(monkeypatch):
    model = tiny_model(num_classes=4)
    monkeypatch.setattr(posterior_scorer, "WORTH_COMPILING_S", 0.0)
    timed(monkeypatch, exact=0.05, compiled=0.06)
    scorer = PosteriorScorer(model)
    assert scorer.prepare().startswith("exact: 50 ms, compiled")
    image = digit_like(model)
    np.testing.assert_array_equal(scorer(image), class_posterior(model, image))


def test_a_failing_compile_leaves_the_exact_posterior(monkeypatch):
    model = tiny_model(num_classes=4)
    monkeypatch.setattr(posterior_scorer, "WORTH_COMPILING_S", 0.0)

    def cannot_compile(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\ndetail")
    monkeypatch.setattr(torch, "compile", cannot_compile)
    scorer = PosteriorScorer(model)
    assert scorer.prepare() == ("exact: compiling failed (RuntimeError: InvalidCxxCompiler: "
                                "No working C++ compiler found)")
    image = digit_like(model)
    np.testing.assert_array_equal(scorer(image), class_posterior(model, image))


def test_a_packaged_app_never_compiles(monkeypatch):
    model = tiny_model(num_classes=4)
    monkeypatch.setattr(posterior_scorer, "WORTH_COMPILING_S", 0.0)
    monkeypatch.setattr("sys.frozen", True, raising=False)
    scorer = PosteriorScorer(model)
    assert scorer.prepare() == "exact: a packaged app does not compile"


def test_a_scorer_does_not_keep_its_model_alive():
    model = tiny_model(num_classes=4)
    scorer = scorer_for(model)
    scorer(digit_like(model))
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
    with pytest.raises(ReferenceError, match="no longer exists"):
        scorer(np.zeros((1, 6, 7), int))


def test_each_model_has_one_scorer_and_one_preparer():
    model, other = tiny_model(num_classes=4), tiny_model(num_classes=4)
    assert scorer_for(model) is scorer_for(model) is not scorer_for(other)
    claims = []
    threads = [threading.Thread(target=lambda: claims.append(scorer_for(model).claim()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claims) == [False] * 7 + [True]
