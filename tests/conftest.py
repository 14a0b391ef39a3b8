import gzip
import os
import struct

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from model import ModelConfig, build_model  # noqa: E402


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough that every test runs in milliseconds."""
    fields = dict(architecture="gated", channels=1, distribution="bernoulli", levels=2,
                  height=6, width=7, layers=2, hidden_channels=6, first_kernel_size=3,
                  kernel_size=3, num_classes=0)
    fields.update(overrides)
    if fields["distribution"] == "categorical" and "levels" not in overrides:
        fields["levels"] = 4
    return ModelConfig(**fields)


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model(tiny_config(**overrides))
    # Fresh class biases start at zero; make them matter so class tests can fail.
    for name, parameter in model.named_parameters():
        if "class_bias" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    return model.eval()


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """Tests never read or write the user's real settings."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))


def write_mnist(directory, train_images, test_images):
    """Synthetic MNIST IDX files (gzip) in `directory`; labels cycle through 0-9."""
    for prefix, images in (("train", train_images), ("t10k", test_images)):
        labels = np.arange(len(images)) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            array = np.asarray(array, dtype=np.uint8)
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            header += struct.pack(f">{array.ndim}I", *array.shape)
            (directory / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes()))
    return directory


@pytest.fixture(scope="module")
def one_thread():
    """Steps here take milliseconds: a second thread only adds hand-off overhead, and on a
    shared, busy CPU its spin-waiting made them up to 30 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
