"""Choosing how training runs (eager or compiled, fp32 or bf16) by timing it on this host."""

import pytest
import torch

from model import build_model
from model.config import ModelConfig
from model.training import engine as train_engine
from model.training.engine import Engine, candidates, choose_engine
from model.training.evaluate import UsageError

TINY = ModelConfig(architecture="gated", channels=1, distribution="bernoulli", levels=2,
                   height=8, width=8, layers=1, hidden_channels=4, first_kernel_size=3,
                   kernel_size=3, num_classes=0)


def test_explicit_choices_force_a_single_engine():
    cpu = torch.device("cpu")
    assert candidates("on", "bf16", cpu) == [Engine(True, "bf16")]
    assert candidates("off", "fp32", cpu) == [Engine(False, "fp32")]


def test_auto_times_bf16_only_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(train_engine, "bf16_is_native", lambda device: False)
    assert candidates("auto", "auto", cpu) == [Engine(False, "fp32"), Engine(True, "fp32")]
    monkeypatch.setattr(train_engine, "bf16_is_native", lambda device: True)
    assert set(candidates("off", "auto", cpu)) == {Engine(False, "fp32"), Engine(False, "bf16")}


def test_timing_picks_the_fastest_skips_a_failing_engine_and_trains_nothing(monkeypatch):
    torch.manual_seed(0)
    model = build_model(TINY).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real_scorer_for = train_engine.scorer_for

    def scorer_for(model, engine):
        if engine.compiled:
            raise RuntimeError("no C compiler\nmore detail")
        return real_scorer_for(model, engine)

    monkeypatch.setattr(train_engine, "scorer_for", scorer_for)
    x = torch.randint(0, 2, (4, 1, 8, 8))
    said = []
    engines = [Engine(False, "fp32"), Engine(True, "fp32"), Engine(False, "bf16")]
    engine, scorer, timings = choose_engine(model, x, None, engines, said.append)
    assert [t.engine for t in timings] == engines
    failed = timings[1]
    assert failed.images_per_second is None and failed.error == "RuntimeError: no C compiler"
    working = [t for t in timings if t.images_per_second]
    assert engine == max(working, key=lambda t: t.images_per_second).engine
    assert scorer.autocast_dtype == engine.autocast_dtype
    assert any("failed (RuntimeError: no C compiler)" in line for line in said)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_a_forced_compile_that_cannot_build_says_how_to_fix_it(monkeypatch):
    model = build_model(TINY).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def failing_step(model, scorer, x, labels, steps):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\ndetail")

    monkeypatch.setattr(train_engine, "step_seconds", failing_step)
    x = torch.randint(0, 2, (4, 1, 8, 8))
    with pytest.raises(UsageError, match=r"install a C\+\+ compiler and Python's headers "
                                         r"\(on Debian: g\+\+ python3-dev\)"):
        choose_engine(model, x, None, [Engine(True, "fp32")])
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key
    # An eager engine asked for is not tried first: nothing can fail to build.
    engine, _, timings = choose_engine(model, x, None, [Engine(False, "fp32")])
    assert engine == Engine(False, "fp32") and timings == []
