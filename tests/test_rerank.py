"""model.rerank (hole-aware completion) and model.training.holes (its measurement), on tiny
models."""

import itertools
import json

import numpy as np
import pytest
import torch

from conftest import save_tiny_digit_model, tiny_digit_model, tiny_model
from model import complete
from model.rerank import (
    choose,
    evidence_mask,
    rank,
    rerank,
    reranking_matters,
    resampling_weights,
)
from model.training import recognise
from model.training.holes import WAYS, central_hole_known, measure_holes
from model.training.holes import main as holes_main

pytestmark = pytest.mark.usefixtures("one_thread")


def holed(model, seed=0):
    """A random image and a mask with a hole that has known pixels right of and below it."""
    cfg = model.config
    image = np.random.default_rng(seed).integers(0, cfg.levels,
                                                 (cfg.channels, cfg.height, cfg.width))
    known = np.ones((cfg.height, cfg.width), bool)
    known[1:4, 2:5] = False
    return image, known


def direct_logliks(model, images, known, class_label=None):
    """log p(x) and log p(known pixels after the first unknown) straight from the logits,
    with torch.distributions and a raster-order loop: nothing shared with model.rerank."""
    x = torch.from_numpy(np.asarray(images)).long()
    labels = None if class_label is None else torch.full((len(x),), class_label)
    with torch.no_grad():
        logits = model(x, labels).double()
    if model.config.distribution == "bernoulli":
        logp = torch.distributions.Bernoulli(logits=logits).log_prob(x.double())
    else:
        logp = torch.distributions.Categorical(logits=logits.movedim(2, -1)).log_prob(x)
    logp = logp.sum(1).numpy()  # (N, H, W): channels together
    height, width = known.shape
    order = [(r, c) for r in range(height) for c in range(width)]
    first = next(i for i, (r, c) in enumerate(order) if not known[r, c])
    evidence = sum(logp[:, r, c] for i, (r, c) in enumerate(order)
                   if i > first and known[r, c])
    return logp.reshape(len(x), -1).sum(1), evidence


@pytest.mark.parametrize(("arch", "distribution", "channels", "classes", "label"), [
    ("gated", "bernoulli", 1, 0, None),
    ("gated", "categorical", 3, 3, 1),
    ("pixelcnn", "categorical", 1, 3, None),
])
def test_candidates_are_completions_and_scores_are_the_models_loglikelihood(
        arch, distribution, channels, classes, label):
    model = tiny_model(architecture=arch, distribution=distribution, channels=channels,
                       num_classes=classes)
    image, known = holed(model)
    result = rerank(model, image, known, candidates=5, seed=9, class_label=label)
    plain = complete(model, image, known, candidates=5, seed=9, class_label=label)
    positions = {(s.candidate, s.row, s.col, s.channel) for s in plain}
    assert positions == {(k, r, c, ch) for k in range(5) for r, c in np.argwhere(~known)
                         for ch in range(channels)}  # every unknown pixel sampled, only those
    assert np.array_equal(result.candidates, plain.images)
    assert (result.candidates[:, :, known] == image[:, known]).all()
    assert result.candidates.dtype == np.uint8 and result.candidates.max() < model.config.levels
    assert np.array_equal(result.image, result.candidates[result.index])

    image_loglik, evidence_loglik = direct_logliks(model, result.candidates, known, label)
    np.testing.assert_allclose(result.image_loglik, image_loglik, rtol=1e-5)
    np.testing.assert_allclose(result.evidence_loglik, evidence_loglik, rtol=1e-5)
    if label is not None:  # scored with the class it was sampled with, not without one
        unconditioned, _ = direct_logliks(model, result.candidates, known, None)
        assert not np.allclose(result.image_loglik, unconditioned, rtol=1e-5)


def test_best_keeps_the_most_probable_whole_image():
    model = tiny_model()
    image, known = holed(model)
    indices = set()
    for seed in range(6):
        result = rerank(model, image, known, candidates=8, seed=seed, method="best")
        assert len(set(result.image_loglik.tolist())) > 1
        assert result.index == int(np.argmax(result.image_loglik))
        assert np.array_equal(result.scores, result.image_loglik)
        indices.add(result.index)
    assert indices != {0}  # not simply the first candidate


@pytest.mark.parametrize("method", ["best", "resample"])
def test_one_candidate_is_plain_completion_with_the_same_seed(method):
    model = tiny_model(distribution="categorical")
    image, known = holed(model)
    result = rerank(model, image, known, candidates=1, seed=21, method=method)
    assert result.index == 0 and result.seed == 21
    assert np.array_equal(result.image, complete(model, image, known, seed=21).run()[0])


def test_rank_scores_a_finished_batch_like_rerank():
    model = tiny_model()
    image, known = holed(model)
    completion = complete(model, image, known, candidates=4, seed=2)
    ranked = rank(model, completion.run(), known, method="resample", seed=completion.seed)
    again = rerank(model, image, known, candidates=4, seed=2, method="resample")
    assert ranked.index == again.index
    np.testing.assert_array_equal(ranked.evidence_loglik, again.evidence_loglik)
    assert np.array_equal(ranked.scores, ranked.evidence_loglik)


def test_unknown_method_is_refused_before_sampling():
    model = tiny_model()
    image, known = holed(model)
    with pytest.raises(ValueError, match="Unknown reranking method 'mean'; choose one of best"):
        rerank(model, image, known, method="mean")


def test_evidence_is_the_known_pixels_after_the_first_unknown_one():
    known = np.array([[1, 1, 1],
                      [1, 0, 1],
                      [0, 1, 1]], bool)
    assert np.array_equal(evidence_mask(known), [[0, 0, 0],
                                                 [0, 0, 1],
                                                 [0, 1, 1]])
    assert not evidence_mask(np.ones((3, 3), bool)).any()


@pytest.mark.parametrize(("name", "rows", "expected"), [
    ("bottom half", slice(14, 28), False),
    ("everything", slice(0, 28), False),
    ("nothing", slice(0, 0), False),
])
def test_reranking_does_not_matter_when_nothing_known_follows_the_hole(name, rows, expected):
    known = np.ones((28, 28), bool)
    known[rows] = False
    assert reranking_matters(known) is expected


def test_reranking_matters_for_a_central_hole_or_a_known_last_pixel():
    assert reranking_matters(central_hole_known(28, 28, 14))
    known = np.zeros((28, 28), bool)
    known[-1, -1] = True
    assert reranking_matters(known)
    known = np.ones((28, 28), bool)
    known[-1, -1] = False
    assert not reranking_matters(known)


def test_resampling_weights_are_a_stable_softmax_of_the_evidence():
    weights = resampling_weights(np.array([-1000.0, -1000.0 + np.log(3), -2000.0]))
    np.testing.assert_allclose(weights, [0.25, 0.75, 0.0], atol=1e-12)


def test_resampled_choices_follow_the_weights():
    evidence = np.log([1.0, 2.0, 3.0, 4.0]) - 40.0
    image = np.zeros(4)  # "best" would look here; resampling must not
    draws = np.array([choose("resample", image, evidence, seed) for seed in range(8000)])
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    # 4 standard deviations of a frequency near 0.4 over 8000 draws is 0.022.
    np.testing.assert_allclose(frequencies, [0.1, 0.2, 0.3, 0.4], atol=0.022)


def test_resampling_draws_from_the_posterior_of_the_hole():
    """On a 3x3 image with two unknown pixels, enumerate the four fills: the exact posterior
    p(fill | known) ∝ p(x) must be what resampling from many candidates picks, and it is far
    from what plain raster completion (the proposal) gives, so the weights matter."""
    model = tiny_model(5, height=3, width=3)
    with torch.no_grad():  # sharper conditionals: the pixels after the hole depend on it
        for parameter in model.parameters():
            parameter.mul_(3)
    image = np.array([[[1, 1, 0], [1, 0, 1], [1, 0, 1]]])
    known = np.ones((3, 3), bool)
    known[1, :2] = False
    fills = list(itertools.product([0, 1], repeat=2))
    enumerated = np.repeat(image[None], 4, axis=0)
    enumerated[:, 0, 1, :2] = fills
    whole, evidence = direct_logliks(model, enumerated, known)
    posterior = np.exp(whole - whole.max())
    posterior /= posterior.sum()
    proposal = np.exp(whole - evidence) / np.exp(whole - evidence).sum()

    result = rerank(model, image, known, candidates=4000, seed=0, method="resample")
    fill_of = [fills.index(tuple(c[0, 1, :2])) for c in result.candidates]
    picked = np.bincount(fill_of, weights=result.weights, minlength=4)
    sampled = np.bincount(fill_of, minlength=4) / len(fill_of)
    np.testing.assert_allclose(sampled, proposal, atol=0.03)
    np.testing.assert_allclose(picked, posterior, atol=0.03)
    assert np.abs(proposal - posterior).max() > 0.08
    # Weighting by the whole image's likelihood would count the fill twice: also far off.
    doubled = np.bincount(fill_of, minlength=4,
                          weights=np.exp(result.image_loglik - result.image_loglik.max()))
    assert np.abs(doubled / doubled.sum() - posterior).max() > 0.08


def test_central_hole_is_centred():
    known = central_hole_known(28, 28, 14)
    assert (~known).sum() == 196
    assert not known[7:21, 7:21].any() and known[6].all() and known[21].all()
    assert known[:, 6].all() and known[:, 21].all()
    with pytest.raises(ValueError, match="does not fit"):
        central_hole_known(28, 28, 29)


def test_measure_holes_compares_completions_with_shared_random_numbers():
    pixelcnn = tiny_digit_model()
    classifier = recognise.DigitClassifier(levels=2).eval()
    images = np.random.default_rng(0).integers(0, 2, (3, 1, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4])
    result = measure_holes(pixelcnn, classifier, images, labels, hole=10, candidates=3, seed=4)
    assert result["hole"] == {"size": 10, "rows": [9, 18], "cols": [9, 18]}
    assert set(result["results"]) == {"none"} and set(result["results"]["none"]) == set(WAYS)
    known = central_hole_known(28, 28, 10)
    for k, image in enumerate(images):
        plain = complete(pixelcnn, image, known, seed=4 + k).run()[0]
        assert np.array_equal(result["completions"]["none/plain"][k], plain)
        for method in ("best", "resample"):
            batch = rerank(pixelcnn, image, known, candidates=3, seed=4 + k, method=method)
            assert np.array_equal(result["completions"][f"none/{method}"][k], batch.image)
    for way in WAYS:
        assert (result["completions"][f"none/{way}"][:, :, known] == images[:, :, known]).all()
    _, original = direct_logliks(pixelcnn, images, known)
    assert result["context"]["original"]["evidence_loglik"] == pytest.approx(original.mean())


def test_measure_holes_with_classes_completes_as_each_mode_says():
    pixelcnn = tiny_model(height=28, width=28, layers=1, hidden_channels=4, num_classes=10)
    classifier = recognise.DigitClassifier(levels=2).eval()
    images = np.random.default_rng(5).integers(0, 2, (2, 1, 28, 28), dtype=np.uint8)
    labels = np.array([7, 2])
    result = measure_holes(pixelcnn, classifier, images, labels, hole=10, candidates=4, seed=1)
    assert set(result["results"]) == {"none", "true", "auto"}
    known = central_hole_known(28, 28, 10)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        true = rerank(pixelcnn, image, known, candidates=4, seed=1 + k, class_label=int(label),
                      method="resample")
        assert np.array_equal(result["completions"]["true/resample"][k], true.image)
        likely = complete(pixelcnn, image, known, seed=1 + k, class_label="likely").run()[0]
        assert np.array_equal(result["completions"]["auto/plain"][k], likely)
        drawn = rerank(pixelcnn, image, known, candidates=4, seed=1 + k, class_label="drawn",
                       method="best")
        assert np.array_equal(result["completions"]["auto/best"][k], drawn.image)


def test_holes_command_prints_a_table_or_json(striped_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    save_tiny_digit_model(tmp_path / "tiny")
    arguments = ["--model", str(tmp_path / "tiny"), "--data", str(striped_mnist), "--count", "3",
                 "--rerank", "2"]
    assert holes_main([*arguments, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 3 and result["candidates"] == 2
    assert result["hole"] == {"size": 10, "rows": [9, 18], "cols": [9, 18]}
    for cell in [*result["results"]["none"].values(), *result["context"].values()]:
        assert 0.0 <= cell["recognised_rate"] <= 1.0
        assert cell["evidence_loglik"] < 0
    assert 0.0 <= result["classifier_test_accuracy"] <= 1.0

    assert holes_main(arguments) == 0
    out = capsys.readouterr().out
    assert "| completion | no class |" in out
    for name in ("original digit", "hole left empty", "plain raster completion",
                 "hole-aware, best of N", "hole-aware, resampled"):
        assert f"| {name} |" in out

    assert holes_main([*arguments, "--hole", "29"]) == 2
    assert "does not fit" in capsys.readouterr().err
