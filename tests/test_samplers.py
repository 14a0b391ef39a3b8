import numpy as np
import pytest
import torch

from conftest import tiny_model
from model import complete, pick_device
from model.task import PixelSample, on_device


def half_known(model, seed=0):
    cfg = model.config
    rng = np.random.default_rng(seed)
    image = rng.integers(0, cfg.levels, (cfg.channels, cfg.height, cfg.width))
    known = np.zeros((cfg.height, cfg.width), bool)
    known[: cfg.height // 2] = True
    known[-1, ::2] = True  # known pixels after unknown ones, too
    return image, known


SAMPLERS = pytest.mark.parametrize("sampler", ["reference", "fast"])


@SAMPLERS
@pytest.mark.parametrize("arch", ["gated", "pixelcnn"])
@pytest.mark.parametrize(("colours", "distribution"), [(1, "bernoulli"), (3, "categorical")])
def test_only_unknown_pixels_are_streamed_in_raster_order_and_known_ones_never_change(
        colours, distribution, arch, sampler):
    model = tiny_model(channels=colours, distribution=distribution, architecture=arch)
    image, known = half_known(model)
    completion = complete(model, image, known, candidates=2, seed=3, sampler=sampler)
    samples = list(completion)
    expected = [(k, r, c, ch) for r, c in zip(*np.nonzero(~known), strict=False)
                for ch in range(colours) for k in range(2)]
    assert [(s.candidate, s.row, s.col, s.channel) for s in samples] == expected
    assert len(samples) == completion.total
    images = completion.images
    assert images.shape == (2, colours, 6, 7)
    assert (images[:, :, known] == image[:, known]).all()
    for s in samples:
        assert images[s.candidate, s.channel, s.row, s.col] == s.value
        assert s.probs.shape == (model.config.levels,)
        assert s.probs.sum() == pytest.approx(1.0)


@SAMPLERS
def test_same_seed_gives_identical_samples_and_different_seeds_differ(sampler):
    model = tiny_model(distribution="categorical", levels=8)
    image, known = half_known(model)
    first = complete(model, image, known, seed=11, candidates=3, sampler=sampler).run()
    again = complete(model, image, known, seed=11, candidates=3, sampler=sampler).run()
    other = complete(model, image, known, seed=12, candidates=3, sampler=sampler).run()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@SAMPLERS
def test_candidate_k_does_not_depend_on_how_many_candidates_are_drawn(sampler):
    model = tiny_model()
    image, known = half_known(model)
    one = complete(model, image, known, seed=5, candidates=1, sampler=sampler).run()
    four = complete(model, image, known, seed=5, candidates=4, sampler=sampler).run()
    assert np.array_equal(one[0], four[0])
    assert not all(np.array_equal(four[0], four[k]) for k in range(1, 4))


@SAMPLERS
@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_temperature_zero_picks_the_most_likely_value(distribution, sampler):
    model = tiny_model(distribution=distribution, num_classes=3).double()  # no float ties
    image, known = half_known(model)
    completion = complete(model, image, known, temperature=0, seed=1, class_label=2,
                          sampler=sampler)
    samples = list(completion)
    # The model is causal, so its logits on the finished image are the ones each pixel
    # was drawn from.
    with torch.no_grad():
        logits = model(torch.from_numpy(completion.images).long(), torch.tensor([2]))
        assert logits.dtype == torch.float64
    for s in samples:
        if distribution == "bernoulli":
            best = int(logits[0, s.channel, s.row, s.col] > 0)
        else:
            best = int(logits[0, s.channel, :, s.row, s.col].argmax())
        assert s.value == best
        assert s.probs[best] == 1.0
    cold = complete(model, image, known, temperature=1e-4, seed=2, class_label=2,
                    sampler=sampler).run()
    assert np.array_equal(cold, completion.images)


@SAMPLERS
def test_a_class_label_changes_the_distributions_and_the_samples(sampler):
    model = tiny_model(num_classes=3, distribution="categorical", levels=8)
    image, known = half_known(model)
    runs = [list(complete(model, image, known, seed=4, class_label=label, candidates=4,
                          sampler=sampler))
            for label in (None, 0, 1)]
    probs = [np.stack([s.probs for s in run]) for run in runs]
    values = [[s.value for s in run] for run in runs]
    assert not np.allclose(probs[0][0], probs[1][0])
    assert values[0] != values[1] and values[1] != values[2]


def test_stopping_the_reference_stream_stops_the_work():
    model = tiny_model()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    image, known = half_known(model)
    completion = complete(model, image, known, candidates=2, sampler="reference")
    taken = [next(completion) for _ in range(4)]  # two pixels, two candidates each
    assert all(isinstance(s, PixelSample) for s in taken)
    assert len(calls) == 2
    completion.close()
    assert list(completion) == []
    assert len(calls) == 2


@SAMPLERS
def test_everything_known_samples_nothing(sampler):
    model = tiny_model()
    image, _ = half_known(model)
    completion = complete(model, image, None, sampler=sampler)
    assert list(completion) == []
    assert np.array_equal(completion.images[0], image)


@pytest.mark.parametrize(("options", "message"), [
    (dict(candidates=0), "at least 1"),
    (dict(temperature=-1), "Temperature"),
    (dict(class_label=5), "Class 5"),
])
@SAMPLERS
def test_bad_options_are_rejected_with_a_clear_message(options, message, sampler):
    model = tiny_model(num_classes=3)
    image, known = half_known(model)
    with pytest.raises(ValueError, match=message):
        complete(model, image, known, sampler=sampler, **options)


def test_unknown_sampler_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="Unknown sampler 'magic'"):
        complete(model, np.zeros((6, 7)), None, sampler="magic")


def test_wrong_image_or_mask_size_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="does not fit"):
        complete(model, np.zeros((5, 5)), None)
    with pytest.raises(ValueError, match="mask of shape"):
        complete(model, np.zeros((6, 7)), np.zeros((6, 6), bool))


def test_device_choice_prefers_an_accelerator_and_honours_a_forced_one():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"
    if torch.cuda.is_available():
        assert pick_device("cuda").type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            pick_device("cuda")


def test_a_sampler_never_moves_the_callers_model_to_another_device():
    model = tiny_model()
    assert on_device(model, torch.device("cpu")) is model
    # "meta" stands in for a GPU here: a copy goes there, made once; the model stays put.
    elsewhere = on_device(model, torch.device("meta"))
    assert elsewhere is not model and next(elsewhere.parameters()).device.type == "meta"
    assert next(model.parameters()).device.type == "cpu"
    assert on_device(model, torch.device("meta")) is elsewhere
