import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_config, tiny_model
from model import ModelFileError, build_model, load_model, nll, nll_nats, read_card, save_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(num_classes=3, distribution="categorical")
    weights, card = save_model(model, tmp_path / "tiny", note="for tests")
    return model, weights, card


@pytest.mark.parametrize("arch", ["gated", "pixelcnn"])
def test_save_then_load_gives_identical_outputs(tmp_path, arch):
    model = tiny_model(architecture=arch, channels=3, distribution="categorical", num_classes=3)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randint(0, 4, (2, 3, 6, 7))
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([0, 2])), loaded(x, torch.tensor([0, 2])))
    assert loaded.config == model.config
    assert not loaded.training


def test_the_card_keeps_what_the_trainer_wrote(saved):
    model, weights, card = saved
    assert read_card(card)["note"] == "for tests"
    assert read_card(weights)["config"] == model.config


def test_missing_weights_file(saved):
    _, weights, _ = saved
    weights.unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.safetensors: weights file not found"):
        load_model(weights)


def test_missing_config_file(saved):
    _, weights, card = saved
    card.unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.json: model config file not found"):
        load_model(weights)


def test_text_file_is_not_a_safetensors_file(saved):
    _, weights, _ = saved
    weights.write_text("these are not the weights you are looking for\n" * 10)
    with pytest.raises(ModelFileError, match=r"tiny\.safetensors: not a safetensors file"):
        load_model(weights)


@pytest.mark.parametrize(("keep", "expected"), [
    (3, "not a safetensors file"),  # not even a header length
    (40, "truncated"),  # cut inside the header
    (-100, "truncated"),  # cut inside the tensor data
])
def test_truncated_weights_file(saved, keep, expected):
    _, weights, _ = saved
    data = weights.read_bytes()
    weights.write_bytes(data[:keep])
    with pytest.raises(ModelFileError, match=rf"tiny\.safetensors: {expected}"):
        load_model(weights)


def test_config_that_is_not_json(saved):
    _, weights, card = saved
    card.write_text("{ not json")
    with pytest.raises(ModelFileError, match=r"tiny\.json: not valid JSON"):
        load_model(weights)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.pop("levels"), "missing key\\(s\\): levels"),
    (lambda c: c.update(layers="8"), "'layers' must be int, not str"),
    (lambda c: c.update(layers=True), "'layers' must be int, not bool"),
    (lambda c: c.update(extra=1), "unknown key\\(s\\): extra"),
    (lambda c: c.update(channels=2), "channels must be 1 or 3"),
    (lambda c: c.update(architecture="pixelcnn", hidden_channels=9),
     "hidden_channels \\(9\\) of the classic PixelCNN must be a multiple of 2"),
])
def test_config_with_missing_or_mistyped_keys(saved, change, message):
    _, weights, card = saved
    data = json.loads(card.read_text())
    change(data["config"])
    card.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=r"tiny\.json: .*" + message):
        load_model(weights)


def test_weights_with_other_tensor_names(tmp_path, saved):
    _, weights, _ = saved
    deeper = build_model(tiny_config(num_classes=3, distribution="categorical", layers=3))
    save_model(deeper, tmp_path / "deeper")
    (tmp_path / "deeper.safetensors").replace(weights)
    with pytest.raises(ModelFileError, match="tensor names do not match the config; unexpected"):
        load_model(weights)


def test_weights_with_other_tensor_shapes(tmp_path, saved):
    _, weights, _ = saved
    wider = build_model(tiny_config(num_classes=3, distribution="categorical",
                                    hidden_channels=9))
    save_model(wider, tmp_path / "wider")
    (tmp_path / "wider.safetensors").replace(weights)
    with pytest.raises(ModelFileError, match="has shape .* but the config needs"):
        load_model(weights)


def test_weights_holding_nan(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.head[1].weight[0, 0, 0, 0] = float("nan")
    save_model(model, tmp_path / "nan")
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(tmp_path / "nan")


@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_nll_is_reported_in_nats_and_bits_per_dimension(distribution):
    model = tiny_model(distribution=distribution, channels=3)
    x = torch.randint(0, model.config.levels, (5, 3, 6, 7))
    with torch.no_grad():
        nats, bits = nll(model, x)
    assert nats.shape == bits.shape == (5,)
    assert torch.allclose(bits, nats / (3 * 6 * 7 * torch.log(torch.tensor(2.0))))
    # A uniform model would need log2(levels) bits per dimension; a random one is near that.
    assert (bits > 0).all() and (bits < 3 * torch.log2(torch.tensor(model.config.levels))).all()


@pytest.mark.slow
def test_importing_the_model_package_does_not_import_qt():
    code = "import sys, model; print(any(m.startswith('PySide6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("distribution,levels", [("bernoulli", 2), ("categorical", 4)])
def test_pixel_surprise_is_each_pixels_share_of_the_image_nll(distribution, levels):
    from model.distributions import pixel_surprise

    model = tiny_model(distribution=distribution, levels=levels, height=5, width=6,
                       num_classes=2)
    image = np.random.default_rng(0).integers(0, levels, (1, 5, 6))
    surprise = pixel_surprise(model, image, class_label=1)
    assert surprise.shape == (5, 6) and (surprise > 0).all()
    with torch.no_grad():
        total = nll_nats(model, torch.from_numpy(image[None]), torch.tensor([1]))
    assert surprise.sum() == pytest.approx(float(total), rel=1e-5)
