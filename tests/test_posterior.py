"""model.posterior: the class a drawing looks like, and completions conditioned on it."""

import itertools

import numpy as np
import pytest
import torch

from conftest import tiny_model
from model import complete
from model.posterior import (
    CLASS_STREAM,
    choose_classes,
    class_log_likelihoods,
    class_posterior,
    prefix_mask,
)
from model.rerank import rerank

pytestmark = pytest.mark.usefixtures("one_thread")


def exhaustive_prefix_likelihoods(model, image, known):
    """log p(prefix | class) by brute force: p(x | class) summed over every image that
    agrees with the prefix (all 2^(H*W) binary images of a tiny model)."""
    cfg = model.config
    prefix = prefix_mask(known).ravel()
    images = np.array(list(itertools.product([0, 1], repeat=cfg.height * cfg.width)))
    images = images[(images[:, prefix] == image.ravel()[prefix]).all(1)]
    x = torch.from_numpy(images.reshape(-1, 1, cfg.height, cfg.width))
    totals = []
    for label in range(cfg.num_classes):
        with torch.no_grad():
            logits = model(x, torch.full((len(x),), label)).double()
        logp = torch.distributions.Bernoulli(logits=logits).log_prob(x.double())
        totals.append(float(torch.logsumexp(logp.flatten(1).sum(1), 0)))
    return np.array(totals)


@pytest.mark.parametrize("hole", [(1, 1), (0, 2), (2, 0)])
def test_posterior_equals_enumerating_every_completion(hole):
    model = tiny_model(height=3, width=3, num_classes=3).double()
    image = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    known = np.ones((3, 3), bool)
    known[hole] = False
    exact = exhaustive_prefix_likelihoods(model, image, known)
    np.testing.assert_allclose(class_log_likelihoods(model, image, known), exact, rtol=1e-9)
    posterior = np.exp(exact - exact.max())
    np.testing.assert_allclose(class_posterior(model, image, known),
                               posterior / posterior.sum(), rtol=1e-9)
    assert len(set(np.round(posterior, 6))) == 3  # the classes are told apart


@pytest.mark.parametrize(("architecture", "distribution", "channels"), [
    ("gated", "bernoulli", 1), ("gated", "categorical", 3), ("pixelcnn", "categorical", 1),
])
def test_top_rows_logits_are_those_rows_of_the_whole_images_logits(
        architecture, distribution, channels):
    model = tiny_model(architecture=architecture, distribution=distribution,
                       channels=channels, num_classes=2)
    cfg = model.config
    x = torch.from_numpy(np.random.default_rng(1).integers(
        0, cfg.levels, (2, channels, cfg.height, cfg.width)))
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        whole = model(x, labels)
        for rows in range(1, cfg.height + 1):
            top = model.top_rows_logits(x[:, :, :rows], labels)
            torch.testing.assert_close(top, whole[..., :rows, :], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="are not the top rows"):
        model.top_rows_logits(x[:, :, :, :3])


def test_only_the_known_pixels_before_the_first_unknown_one_count():
    model = tiny_model(num_classes=4)
    image = np.random.default_rng(2).integers(0, 2, (6, 7))
    known = np.ones((6, 7), bool)
    known[3, 2:5] = False
    other = image.copy()
    other[3, 2:] = 1 - other[3, 2:]  # the hole and the rest of its row ...
    other[4:] = 1 - other[4:]  # ... and everything below: after the first unknown pixel
    np.testing.assert_array_equal(class_log_likelihoods(model, image, known),
                                  class_log_likelihoods(model, other, known))
    changed = image.copy()
    changed[3, 1] = 1 - changed[3, 1]  # the last pixel of the prefix
    assert not np.allclose(class_log_likelihoods(model, image, known),
                           class_log_likelihoods(model, changed, known))
    nothing_before = np.ones((6, 7), bool)
    nothing_before[0, 0] = False
    np.testing.assert_array_equal(class_posterior(model, image, nothing_before), [0.25] * 4)


def test_a_model_without_classes_has_no_posterior_and_auto_means_no_class():
    model = tiny_model()
    with pytest.raises(ValueError, match="no classes"):
        class_posterior(model, np.zeros((6, 7)))
    choice = choose_classes(model, np.zeros((1, 6, 7)), None, "auto", 3, seed=0)
    assert choice.labels == (None, None, None) and choice.policy == "none"


def test_auto_takes_the_most_likely_class_for_one_candidate_and_draws_for_several():
    model = tiny_model(num_classes=5)
    image = np.random.default_rng(3).integers(0, 2, (1, 6, 7))
    known = np.ones((6, 7), bool)
    known[4:] = False
    posterior = class_posterior(model, image, known)
    one = choose_classes(model, image, known, "auto", 1, seed=0)
    assert one.policy == "likely" and one.labels == (int(np.argmax(posterior)),)
    np.testing.assert_array_equal(one.posterior, posterior)

    many = choose_classes(model, image, known, "auto", 4000, seed=7)
    assert many.policy == "drawn"
    expected = np.random.default_rng([7, CLASS_STREAM]).choice(5, size=4000, p=posterior)
    assert many.labels == tuple(expected.tolist())
    frequencies = np.bincount(many.labels, minlength=5) / 4000
    np.testing.assert_allclose(frequencies, posterior, atol=0.03)
    assert choose_classes(model, image, known, "likely", 3, seed=0).labels == one.labels * 3
    # With nothing known before the hole the single "likely" completion has no class.
    empty_prefix = np.zeros((6, 7), bool)
    assert choose_classes(model, image, empty_prefix, "likely", 1, seed=0).labels == (None,)


@pytest.mark.parametrize(("class_label", "message"), [
    (5, "Class 5 is not available; this model has 3 classes"),
    ([0, 1], "2 class labels given for 3 candidates"),
    ([0, None, 3], "Class 3 is not available"),
    ("maybe", "Unknown class 'maybe'"),
    (1.5, "A class must be a number"),
])
def test_bad_classes_are_refused_with_a_message(class_label, message):
    model = tiny_model(num_classes=3)
    with pytest.raises(ValueError, match=message):
        complete(model, np.zeros((6, 7)), np.zeros((6, 7), bool), candidates=3,
                 class_label=class_label)


@pytest.mark.parametrize(("architecture", "distribution", "channels"), [
    ("gated", "bernoulli", 1), ("gated", "categorical", 3), ("pixelcnn", "categorical", 1),
])
def test_candidates_of_different_classes_draw_what_each_class_draws_alone(
        architecture, distribution, channels):
    """Candidate k conditioned on class c is, sample for sample, candidate k of a run with
    every candidate on c; in float64 the fast and the reference sampler agree."""
    model = tiny_model(architecture=architecture, distribution=distribution,
                       channels=channels, num_classes=3).double()
    cfg = model.config
    image = np.random.default_rng(4).integers(0, cfg.levels, (channels, cfg.height, cfg.width))
    known = np.ones((cfg.height, cfg.width), bool)
    known[2:] = False
    known[4, 5] = True
    labels = [2, 0, None, 2, 1]
    fast = complete(model, image, known, candidates=5, seed=11, class_label=labels)
    samples = list(fast)
    reference = complete(model, image, known, candidates=5, seed=11, class_label=labels,
                         sampler="reference")
    assert [(s.candidate, s.row, s.col, s.channel, s.value) for s in samples] == [
        (s.candidate, s.row, s.col, s.channel, s.value) for s in reference]
    assert fast.task.class_labels == tuple(labels)
    for label in set(labels):
        alone = complete(model, image, known, candidates=5, seed=11, class_label=label).run()
        for k in np.flatnonzero([lab == label for lab in labels]):
            np.testing.assert_array_equal(fast.images[k], alone[k])
    # The stream is in raster order, candidate by candidate within each pixel-channel.
    order = [(s.row, s.col, s.channel, s.candidate) for s in samples]
    assert order == sorted(order)


def exact_joint_posterior(model, image, known):
    """p(class, fill | every known pixel) by enumeration: p(x | class) over the fills."""
    unknown = np.argwhere(~known)
    table = {}
    for fill in itertools.product([0, 1], repeat=len(unknown)):
        x = image.copy()
        x[tuple(unknown.T)] = fill
        xs = torch.from_numpy(np.repeat(x[None, None], model.config.num_classes, 0))
        with torch.no_grad():
            logits = model(xs, torch.arange(model.config.num_classes)).double()
        logp = torch.distributions.Bernoulli(logits=logits).log_prob(xs.double())
        for label, value in enumerate(logp.flatten(1).sum(1).tolist()):
            table[label, fill] = value
    keys = list(table)
    weights = np.exp(np.array([table[k] for k in keys]) - max(table.values()))
    return dict(zip(keys, weights / weights.sum(), strict=True))


def decisive_tiny_model():
    """A 3 x 3 model of 3 classes whose pixels after the hole change the class posterior:
    p(class | the pixels before the hole) = (0.23, 0.28, 0.49), and given every known
    pixel (0.70, 0.02, 0.28). (A fresh tiny model's classes hardly differ at all.)"""
    model = tiny_model(seed=2, height=3, width=3, num_classes=3).double()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.mul_(6 if "class_bias" in name else 3 if "weight" in name else 1)
    return model


def test_hole_aware_weights_with_drawn_classes_target_the_joint_posterior():
    """Candidates with classes drawn from p(class | pixels before the hole), each weighted
    by the pixels after the hole under its own class: the weighted candidates estimate
    p(class, fill | all known pixels), which enumeration gives exactly."""
    model = decisive_tiny_model()
    image = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    known = np.ones((3, 3), bool)
    known[1, 0:2] = False  # two unknown pixels with known ones after them
    exact = exact_joint_posterior(model, image, known)
    result = rerank(model, image[None], known, candidates=6000, seed=3, method="resample",
                    class_label="drawn")
    estimate = dict.fromkeys(exact, 0.0)
    for label, candidate, weight in zip(result.class_labels, result.candidates,
                                        result.weights, strict=True):
        estimate[label, tuple(candidate[0][~known].tolist())] += weight
    total_variation = 0.5 * sum(abs(estimate[k] - exact[k]) for k in exact)
    assert total_variation < 0.03
    assert max(exact.values()) < 0.6  # a posterior with real alternatives, not one answer
    # The classes were drawn from the prefix's posterior, which the evidence then moved.
    drawn = np.bincount(result.class_labels, minlength=3) / len(result.class_labels)
    np.testing.assert_allclose(drawn, class_posterior(model, image, known), atol=0.03)
    marginal = [sum(v for (label, _), v in exact.items() if label == c) for c in range(3)]
    assert np.abs(drawn - marginal).max() > 0.3
