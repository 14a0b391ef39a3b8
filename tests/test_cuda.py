"""On a CUDA GPU the samplers compute what they compute on the CPU, and running out of its
memory is recognised as such.

The fast sampler's CUDA path runs the same stepper on torch tensors (the compiled kernels are
the CPU's). These tests need a GPU and skip without one: CI has none, and no GPU has been
lent to this project's sessions yet, so they have run only with "cuda" replaced by "cpu".
"""

import numpy as np
import pytest
import torch

from conftest import tiny_model
from gui.device_failures import is_device_failure, is_out_of_memory
from model import complete

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param(dict(architecture=arch, channels=colours, distribution=distribution,
                      height=height, width=width, num_classes=3, layers=3),
                 id=f"{arch}-C{colours}-{height}x{width}")
    for arch in ("gated", "pixelcnn")
    for colours, distribution in ((1, "bernoulli"), (3, "categorical"))
    for height, width in ((7, 9), (10, 6))
]


def masks(height: int, width: int):
    bottom = np.ones((height, width), bool)
    bottom[height // 2:] = False
    hole = np.ones((height, width), bool)
    hole[2:height - 2, 2:width - 2] = False
    return {"bottom half": bottom, "hole": hole, "nothing known": np.zeros_like(bottom)}


@pytest.mark.parametrize("model_options", CASES)
def test_in_float64_both_samplers_on_cuda_draw_what_the_reference_draws_on_the_cpu(
        model_options):
    model = tiny_model(**model_options).double()
    cfg = model.config
    image = np.random.default_rng(0).integers(0, cfg.levels, (cfg.channels, cfg.height,
                                                              cfg.width))
    for name, known in masks(cfg.height, cfg.width).items():
        options = dict(seed=5, candidates=3, temperature=0.9, class_label=1)
        on_cpu = complete(model, image, known, sampler="reference", device="cpu", **options)
        expected = list(on_cpu)
        for sampler in ("reference", "fast"):
            run = complete(model, image, known, sampler=sampler, device="cuda", **options)
            got = list(run)
            assert [s[:5] for s in got] == [s[:5] for s in expected], (sampler, name)
            assert np.array_equal(run.images, on_cpu.images), (sampler, name)
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-10)


def test_in_float32_the_fast_samplers_cuda_distributions_match_the_cpus():
    model = tiny_model(height=12, width=12, layers=4, hidden_channels=12, channels=3,
                       distribution="categorical", levels=8)
    image = np.zeros((3, 12, 12), np.int64)
    known = np.zeros((12, 12), bool)
    known[:3] = True
    on_gpu = list(complete(model, image, known, device="cuda", seed=2, candidates=2))
    # The same seed gives the same uniforms: until float32 rounding flips a draw (rare), both
    # draw the same values from distributions equal within float tolerance.
    on_cpu = list(complete(model, image, known, device="cpu", seed=2, candidates=2))
    agreed = 0
    for a, b in zip(on_gpu, on_cpu, strict=True):
        assert a[:4] == b[:4]
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
        if a.value != b.value:  # a float32 flip: the histories differ from here on
            break
        agreed += 1
    assert agreed > 100


def test_running_out_of_cuda_memory_is_told_by_its_type():
    # What gui/device_failures.py relies on: a real CUDA out of memory is a
    # torch.OutOfMemoryError, which makes the window complete on the CPU instead.
    with pytest.raises(torch.cuda.OutOfMemoryError) as raised:
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")  # a pebibyte
    assert is_out_of_memory(raised.value) and is_device_failure(raised.value)
