"""Train every bundled model (and the Bernoulli protocol's) in one command, sized for one GPU.

    pixelcnn-studio train-all --data MNIST_DIR --output runs/gpu             # one CUDA GPU
    pixelcnn-studio train-all --data MNIST_DIR --output runs/dry --dry-run   # any CPU, seconds

Each model trains in its own `pixelcnn-studio train` process (a failure stops only that
model) with a time budget; the budgets add up to 7.5 minutes, so with start-up, compiling
and the final scoring the whole plan ends within 9 minutes of wall time on one GPU. Each
model lands in --output with its card; the summary table compares each with the shipped
model of its name, where there is one. Nothing is copied into resources/models: a model
worth shipping is copied there by hand, card and all, after looking at it.

--dry-run trains the same plan on the CPU with a tiny network and a few images for a few
seconds each, so the test suite keeps the plan working where there is no GPU.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..card import read_card
from ..io import ModelFileError
from ..registry import MODELS_DIR


@dataclass(frozen=True)
class Job:
    name: str
    minutes: float
    options: tuple[str, ...]
    mnist: bool = True  # needs --data; the emoji need the font or a rendered cache


PLAN = (
    # 12 x 64: a full 28 x 28 completion stays within 50 ms on two CPU cores.
    Job("digits-ink", 2.0, ("--mode", "threshold", "--layers", "12", "--hidden-channels", "64",
                            "--batch-size", "128", "--lr", "2e-3", "--epochs", "60")),
    Job("digits-gray", 2.0, ("--mode", "gray", "--levels", "16", "--layers", "12",
                             "--hidden-channels", "64", "--batch-size", "128", "--lr", "2e-3",
                             "--epochs", "60")),
    # 1140 training images: 10 x 96 overfit after about a hundred epochs on the CPU.
    Job("emoji-color", 2.0, ("--dataset", "emoji", "--layers", "12", "--hidden-channels", "96",
                             "--batch-size", "64", "--lr", "1e-3", "--epochs", "3000",
                             "--hflip", "--patience", "40"), mnist=False),
    # The protocol of the literature: stochastically binarized, no classes, the classic
    # PixelCNN: 15 residual blocks of 32 channels through 16-channel bottlenecks, the shape
    # that reached 81.45 nats in published reproductions after about a hundred epochs.
    Job("digits-bernoulli", 1.5, ("--mode", "bernoulli", "--architecture", "pixelcnn",
                                  "--layers", "15", "--hidden-channels", "32",
                                  "--num-classes", "0", "--batch-size", "128", "--lr", "1e-3",
                                  "--epochs", "60")),
)
DRY_RUN = ("--device", "cpu", "--compile", "off", "--precision", "fp32", "--layers", "1",
           "--hidden-channels", "6", "--first-kernel-size", "3", "--batch-size", "8",
           "--epochs", "1", "--limit-train", "16", "--limit-eval", "8")
DRY_RUN_MINUTES = 0.05


def job_command(job: Job, args) -> list[str]:
    """The `pixelcnn-studio train` command of one job: the plan's options, then the dry run's tiny
    overrides (argparse keeps the last value of an option)."""
    output = Path(args.output)
    minutes = DRY_RUN_MINUTES if args.dry_run else job.minutes
    command = ["--name", job.name, "--output-dir", str(output),
               "--checkpoint-dir", str(output / "checkpoints" / job.name),
               "--time-budget", str(minutes), "--checkpoint-minutes", "1", *job.options]
    if job.mnist:
        command += ["--data", str(args.data)]
    elif args.emoji_cache:
        command += ["--data", str(args.emoji_cache)]
    if args.dry_run:
        command += DRY_RUN
    else:
        command += ["--device", "cuda"]
    return [sys.executable, "-m", "model.training.train", *command]


def summary_row(job: Job, output: Path, seconds: float, returncode: int) -> list[str]:
    if returncode != 0:
        return [job.name, f"{seconds / 60:.1f}", "-", "-", "-", f"failed (exit {returncode})"]
    card = read_card(output / job.name)
    trained = f"{card['test_nll_nats']:.2f} ({card['test_bits_per_dim']:.4f})"
    try:
        shipped_card = read_card(MODELS_DIR / job.name)
    except (OSError, ModelFileError):
        shipped, verdict = "-", "nothing shipped to compare"
    else:
        shipped = (f"{shipped_card['test_nll_nats']:.2f} "
                   f"({shipped_card['test_bits_per_dim']:.4f})")
        same_data = shipped_card.get("training", {}).get("test_images") == card["training"][
            "test_images"]
        better = card["test_nll_nats"] < shipped_card["test_nll_nats"]
        verdict = ("better than shipped" if better else "not better") if same_data else \
            "other test images: compare with pixelcnn-studio evaluate"
    return [job.name, f"{seconds / 60:.1f}", f"{card['epochs']:.2f}", trained, shipped, verdict]


def print_table(rows: list[list[str]]) -> None:
    header = ["model", "minutes", "epochs", "test nats (bits/dim)", "shipped", "verdict"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixelcnn-studio train-all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--output", required=True, help="folder for the models and cards")
    parser.add_argument("--emoji-cache", help="folder of rendered emoji (default: the user's "
                                              "cache; rendered there from the font if missing)")
    parser.add_argument("--only", nargs="+", choices=[job.name for job in PLAN],
                        help="train only these models")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same plan on the CPU, tiny and a few seconds per model")
    args = parser.parse_args(argv)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA GPU here; --dry-run runs the plan on the CPU.",
                  file=sys.stderr)
            return 2
    jobs = [job for job in PLAN if not args.only or job.name in args.only]
    planned = sum(DRY_RUN_MINUTES if args.dry_run else job.minutes for job in jobs)
    print(f"Training {len(jobs)} models, {planned:.1f} minutes of time budgets in all.",
          flush=True)
    rows, started = [], time.monotonic()
    root = Path(__file__).resolve().parents[2]  # the checkout, for PYTHONPATH
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    for job in jobs:
        command = job_command(job, args)
        print(f"\n== {job.name}: {shlex.join(command[1:])}", flush=True)
        job_started = time.monotonic()
        returncode = subprocess.run(command, env=env).returncode
        rows.append(summary_row(job, Path(args.output), time.monotonic() - job_started,
                                returncode))
    print(f"\nAll done in {(time.monotonic() - started) / 60:.1f} minutes of wall time.")
    print_table(rows)
    return 0 if all(not row[-1].startswith("failed") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
