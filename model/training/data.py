"""MNIST loading and pixel quantisation for the PixelCNN.

Plain NumPy/PyTorch with no Qt imports, so training scripts and tests can use it headless.
The model works on small integer "levels" rather than raw 0..255 pixels; this module turns
MNIST's uint8 grayscale into those levels (and back, for display).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..images import levels_of_bytes

IMAGE_SIZE = 28
SPLITS = ("train", "valid", "test")
MODES = ("threshold", "bernoulli", "gray")

# Seed of the permutation that carves the validation set out of the 60k training images.
SPLIT_SEED = 20161
VALID_SIZE = 10000

# Bernoulli binarisation is sampled once per split; each split gets its own fixed seed so the
# splits differ from one another but every run sees exactly the same binary images.
BERNOULLI_SEED = 1234
_SPLIT_SEED_OFFSETS = {"train": 0, "valid": 1, "test": 2}

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08

_FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetError(ValueError):
    """A dataset directory or file is missing or malformed."""


def cache_dir() -> Path:
    """Where derived data (emoji renders, the judging classifier) is cached: the user's
    cache folder, never the source tree or a bundle."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pixelcnn-studio"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (raw or gzip-compressed) into a uint8 array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found.") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read file ({error.strerror}).") from error

    # Trust the content, not the name: MNIST mirrors ship both compressed and
    # decompressed files, sometimes with a misleading extension.
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"{path}: corrupt gzip data ({error}).") from error

    if len(raw) < 4:
        raise DatasetError(f"{path}: not an IDX file (only {len(raw)} bytes long).")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (magic number 0x{magic:08x}).")
    if raw[2] != _IDX_UINT8:
        raise DatasetError(
            f"{path}: unsupported IDX data type 0x{raw[2]:02x} (magic number 0x{magic:08x}); "
            f"only unsigned bytes (0x{_IDX_UINT8:02x}) are supported."
        )
    ndim = raw[3]
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares zero dimensions.")

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(
            f"{path}: truncated IDX header ({len(raw)} bytes, "
            f"{header_size} needed for {ndim} dimensions)."
        )
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    expected = int(np.prod(dims, dtype=object))  # Python ints: no overflow on bogus headers.
    found = len(raw) - header_size
    if found != expected:
        shape = " x ".join(str(d) for d in dims)
        raise DatasetError(
            f"{path}: data size does not match the header: shape {shape} needs "
            f"{expected} bytes but the file holds {found}."
        )
    # Copy so the array is writable (frombuffer over bytes is read-only, which torch dislikes).
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def split_indices(num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, valid_indices) into the official training set.

    Validation is the first VALID_SIZE entries of a fixed-seed permutation (SPLIT_SEED), train
    the rest; both are sorted so the images keep their original order. Files with fewer than
    2 * VALID_SIZE images (tiny synthetic test files) keep the same 1/6 proportion instead:
    validation gets num_images // 6 images.
    """
    if num_images >= 2 * VALID_SIZE:
        num_valid = VALID_SIZE
    else:
        num_valid = num_images // 6
    permutation = np.random.default_rng(SPLIT_SEED).permutation(num_images)
    return np.sort(permutation[num_valid:]), np.sort(permutation[:num_valid])


def load_mnist(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split as (uint8 images N x 28 x 28, int64 labels N).

    "train" and "valid" are disjoint parts of the official 60k training set (see
    split_indices); "test" is the official 10k test set, unchanged.
    """
    _check_split(split)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: MNIST data directory not found.")

    images_stem, labels_stem = _FILE_STEMS["test" if split == "test" else "train"]
    images_path = _find_idx_file(data_dir, images_stem)
    labels_path = _find_idx_file(data_dir, labels_stem)
    images = read_idx(images_path)
    labels = read_idx(labels_path)

    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{images_path}: expected {IMAGE_SIZE} x {IMAGE_SIZE} images, "
            f"found an array of shape {images.shape}."
        )
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected 1-D labels, found shape {labels.shape}.")
    if len(images) != len(labels):
        raise DatasetError(
            f"{data_dir}: {images_path.name} holds {len(images)} images but "
            f"{labels_path.name} holds {len(labels)} labels."
        )

    if split != "test":
        train_idx, valid_idx = split_indices(len(images))
        keep = train_idx if split == "train" else valid_idx
        images, labels = images[keep], labels[keep]
    return images, labels.astype(np.int64)


def levels_for_mode(mode: str, levels: int | None = None) -> int:
    """Number of integer levels the model sees in `mode`.

    The binary modes always have 2 levels and ignore `levels`; "gray" needs 2 <= levels <= 256.
    """
    if mode in ("threshold", "bernoulli"):
        return 2
    if mode == "gray":
        return _check_levels(levels, "Mode 'gray' needs")
    raise ValueError(f"Unknown data mode {mode!r}; expected one of {', '.join(MODES)}.")


def quantize(
    images: np.ndarray, mode: str, levels: int | None = None, split: str | None = None
) -> np.ndarray:
    """Turn uint8 pixels (0..255) into integer levels 0..K-1 (uint8, same shape).

    "threshold": pixel >= 128 -> 1. "bernoulli": 1 with probability pixel / 255, sampled once
    with a seed fixed per split (static binarisation), so `split` is required.
    "gray": `levels` equal-width bins, level = floor(pixel * K / 256).
    """
    num_levels = levels_for_mode(mode, levels)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"quantize expects uint8 pixels (0..255), got dtype {images.dtype}.")

    if mode == "threshold":
        return (images >= 128).astype(np.uint8)
    if mode == "bernoulli":
        if split is None:
            raise ValueError("Mode 'bernoulli' needs a split name, which picks its fixed seed.")
        _check_split(split)
        rng = np.random.default_rng(BERNOULLI_SEED + _SPLIT_SEED_OFFSETS[split])
        # u is uniform on 0..254, so P(u < pixel) = pixel / 255 exactly, with uint8 memory only.
        u = rng.integers(0, 255, size=images.shape, dtype=np.uint8)
        return (u < images).astype(np.uint8)
    return levels_of_bytes(images, num_levels)


def dequantize(levels_array: np.ndarray | torch.Tensor, levels: int) -> np.ndarray:
    """Map level k of K to the uint8 pixel round(k * 255 / (K - 1)), for display and saving."""
    num_levels = _check_levels(levels, "dequantize needs")
    values = np.asarray(levels_array)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"dequantize expects integer levels, got dtype {values.dtype}.")
    if values.size and (values.min() < 0 or values.max() >= num_levels):
        raise ValueError(
            f"Levels must lie in 0..{num_levels - 1}, "
            f"got values from {values.min()} to {values.max()}."
        )
    # Exact integer round-half-up, done once per level and applied as a lookup table.
    k = np.arange(num_levels, dtype=np.int64)
    table = ((2 * 255 * k + (num_levels - 1)) // (2 * (num_levels - 1))).astype(np.uint8)
    return table[values]


class MnistDataset(Dataset):
    """One MNIST split as integer levels: items are (LongTensor 1 x 28 x 28, int label).

    `.images` (uint8, N x 1 x 28 x 28) and `.labels` (int64, N) hold the whole split, so a
    training loop can also slice batches directly without a DataLoader.
    """

    def __init__(
        self, data_dir: str | Path, split: str, mode: str, levels: int | None = None
    ) -> None:
        # Validate the cheap arguments before reading 50 MB of files.
        _check_split(split)
        self.levels = levels_for_mode(mode, levels)
        self.split = split
        self.mode = mode
        images, labels = load_mnist(data_dir, split)
        quantized = quantize(images, mode, self.levels, split)
        self.images = torch.from_numpy(quantized).unsqueeze(1)
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].long(), int(self.labels[index])


def _check_split(split: str | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")


def _check_levels(levels: int | None, what: str) -> int:
    is_int = isinstance(levels, (int, np.integer)) and not isinstance(levels, bool)
    if not is_int or not 2 <= levels <= 256:
        raise ValueError(f"{what} a number of levels between 2 and 256, got {levels!r}.")
    return int(levels)


def _find_idx_file(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        candidate = data_dir / name
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{data_dir}: missing MNIST file {stem}.gz (or uncompressed {stem}).")


# Choosing K for a grayscale model: how far each K's levels are from the original pixels.

def quantization_error(images: np.ndarray, levels: int) -> dict:
    """RMSE, mean and largest absolute error (in 0..255 pixel units) and PSNR (dB) of
    quantizing uint8 `images` to `levels` gray levels and back."""
    restored = dequantize(quantize(images, "gray", levels), levels).astype(np.float64)
    error = restored - images.astype(np.float64)
    rmse = float(np.sqrt((error ** 2).mean()))
    return {"levels": levels, "rmse": rmse, "mean_abs": float(np.abs(error).mean()),
            "max_abs": float(np.abs(error).max()),
            "psnr_db": float("inf") if rmse == 0 else float(20 * np.log10(255 / rmse))}


# The app's default pen: as wide as the training digits' typical stroke.

def ink_run_lengths(ink: np.ndarray) -> np.ndarray:
    """Lengths of the runs of ink (True) along the last axis of a bool array (..., W): for
    (N, H, W) digits, the widths of their strokes where each row crosses one."""
    rows = np.asarray(ink, bool).reshape(-1, np.shape(ink)[-1]).astype(np.int8)
    edges = np.diff(np.pad(rows, ((0, 0), (1, 1))), axis=1)
    return np.flatnonzero(edges.ravel() == -1) - np.flatnonzero(edges.ravel() == 1)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="pixelcnn-studio data",
        description="How faithfully K gray levels keep MNIST's pixels (validation split): "
                    "the measurement behind a grayscale model's K; and how wide the "
                    "training digits' strokes are: the app's default pen width.")
    parser.add_argument("--data", required=True, help="directory of the MNIST IDX files")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    args = parser.parse_args(argv)
    images, _ = load_mnist(args.data, "valid")
    print("| K | RMSE | mean abs. error | max abs. error | PSNR |")
    print("| --- | --- | --- | --- | --- |")
    for levels in args.levels:
        e = quantization_error(images, levels)
        print(f"| {levels} | {e['rmse']:.2f} | {e['mean_abs']:.2f} | {e['max_abs']:.0f} | "
              f"{e['psnr_db']:.1f} dB |")
    ink = quantize(load_mnist(args.data, "train")[0], "threshold").astype(bool)
    across, down = ink_run_lengths(ink), ink_run_lengths(ink.transpose(0, 2, 1))
    if not len(across):
        print("\nThe thresholded training digits hold no ink (no pixel of 128 or more).")
        return 0
    print(f"\nStrokes of the thresholded training digits, in pixels: median {np.median(across):g}"
          f" across (mean {across.mean():.2f}), median {np.median(down):g} down (mean "
          f"{down.mean():.2f}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
