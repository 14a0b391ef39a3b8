"""torchrun ... -m model.training.train: two CPU processes (gloo) train one model with DDP."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train import TINY_MODEL, blob_images

from conftest import write_mnist
from model import read_card
from model.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    return write_mnist(tmp_path_factory.mktemp("mnist"), blob_images(60, rng),
                       blob_images(12, rng))


def args(mnist_dir, out, name):
    # 50 training images, global batches of 16 (8 per process) for 2 epochs: 8 steps.
    return ["--data", str(mnist_dir), "--name", name, "--output-dir", str(out),
            "--checkpoint-dir", str(out / f"{name}-checkpoints"), "--device", "cpu",
            "--compile", "off", "--precision", "fp32", *TINY_MODEL, "--epochs", "2"]


@pytest.mark.slow
def test_two_processes_hold_identical_weights_equal_to_one_process_on_the_global_batch(
        mnist_dir, tmp_path, one_thread):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "model.training.train",
               *args(mnist_dir, tmp_path, "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert train.main(args(mnist_dir, tmp_path, "one")) == 0

    two, one = read_card(tmp_path / "two"), read_card(tmp_path / "one")
    assert two["training"]["distributed"] == {
        "processes": 2, "backend": "gloo", "global_batch_size": 16,
        "batch_size_per_process": 8, "replica_max_difference": 0.0}
    assert two["steps"] == one["steps"] == 8
    last = {name: torch.load(tmp_path / f"{name}-checkpoints" / "last.pt",
                             weights_only=True)["model"] for name in ("one", "two")}
    # Gloo sums the two halves' gradients in another order than one backward pass: float
    # rounding apart, the same steps.
    for key, tensor in last["one"].items():
        torch.testing.assert_close(last["two"][key], tensor, rtol=1e-5, atol=1e-6)
    assert two["test_nll_nats"] == pytest.approx(one["test_nll_nats"], rel=1e-5)
    # Process 0 sums the training loss over both processes' halves of each batch.
    assert two["learning_curve"][-1]["train_nats"] == pytest.approx(
        one["learning_curve"][-1]["train_nats"], rel=1e-4)
