"""Tests for model/training/data.py on tiny synthetic IDX files (never the real MNIST download)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from model.training.data import (
    BERNOULLI_SEED,
    SPLIT_SEED,
    VALID_SIZE,
    DatasetError,
    MnistDataset,
    dequantize,
    ink_run_lengths,
    levels_for_mode,
    load_mnist,
    quantize,
    read_idx,
    split_indices,
)

NUM_TRAIN = 60  # -> 10 validation + 50 training images, like MNIST at 1/1000 scale.
NUM_TEST = 12


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path, array, compress=None):
    data = idx_bytes(array)
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def numbered_images(count):
    # Each image stores its own index in its first pixel, so we can tell where it came from.
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(count)
    return images


@pytest.fixture
def mnist_dir(tmp_path):
    # Training files gzip-compressed, test files raw, as both forms must be found.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", numbered_images(NUM_TRAIN))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(NUM_TRAIN) % 10)
    test_images = numbered_images(NUM_TEST)
    test_images[:, 5:10, 5:10] = 200
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(NUM_TEST) % 10)
    return tmp_path


# read_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_round_trips_raw_and_gzip_files(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    result = read_idx(write_idx(tmp_path / name, images))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, images)


def test_read_idx_reads_one_dimensional_labels(tmp_path):
    result = read_idx(write_idx(tmp_path / "labels", [3, 1, 4, 1, 5]))
    np.testing.assert_array_equal(result, [3, 1, 4, 1, 5])


def test_read_idx_detects_gzip_by_content_not_by_name(tmp_path):
    labels = np.array([7, 8, 9])
    gzipped_without_suffix = write_idx(tmp_path / "labels", labels, compress=True)
    raw_with_gz_suffix = write_idx(tmp_path / "labels.gz", labels, compress=False)
    np.testing.assert_array_equal(read_idx(gzipped_without_suffix), labels)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), labels)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_read_idx_of_a_missing_file_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere-idx1-ubyte: file not found"):
        read_idx(tmp_path / "nowhere-idx1-ubyte")


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_a_wrong_magic_number(tmp_path, compress):
    data = b"\x12\x34\x08\x01" + idx_bytes([1, 2, 3])[4:]
    path = tmp_path / "bad-magic"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetError, match=r"bad-magic: not an IDX file \(magic number 0x12340801"):
        read_idx(path)


def test_read_idx_rejects_a_non_byte_data_type(tmp_path):
    path = tmp_path / "floats"
    path.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)
    with pytest.raises(DatasetError, match=r"floats: unsupported IDX data type 0x0d"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_truncated_data(tmp_path, compress):
    path = tmp_path / "short-images"
    data = idx_bytes(np.zeros((2, 3, 3)))[:-1]
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetError, match=r"short-images: .*needs 18 bytes .*holds 17"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_header(tmp_path):
    path = tmp_path / "short-header"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3)))[:10])
    with pytest.raises(DatasetError, match=r"short-header: truncated IDX header"):
        read_idx(path)


def test_read_idx_rejects_a_cut_off_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28))))[:30])
    with pytest.raises(DatasetError, match=r"cut\.gz: corrupt gzip data"):
        read_idx(path)


# load_mnist and the train/valid split


def test_split_indices_are_deterministic_disjoint_sorted_and_cover_everything():
    train, valid = split_indices(NUM_TRAIN)
    again_train, again_valid = split_indices(NUM_TRAIN)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(valid, again_valid)
    assert len(valid) == NUM_TRAIN // 6
    assert not set(train) & set(valid)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(NUM_TRAIN))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0)


def test_split_indices_follow_the_fixed_seed_permutation():
    permutation = np.random.default_rng(SPLIT_SEED).permutation(NUM_TRAIN)
    _, valid = split_indices(NUM_TRAIN)
    np.testing.assert_array_equal(valid, np.sort(permutation[: NUM_TRAIN // 6]))


def test_full_size_training_set_keeps_exactly_valid_size_images_for_validation():
    train, valid = split_indices(60000)
    assert (len(train), len(valid)) == (60000 - VALID_SIZE, VALID_SIZE)


def test_load_mnist_train_and_valid_split_the_training_file(mnist_dir):
    train_images, train_labels = load_mnist(mnist_dir, "train")
    valid_images, valid_labels = load_mnist(mnist_dir, "valid")
    assert train_images.shape == (50, 28, 28) and train_images.dtype == np.uint8
    assert valid_images.shape == (10, 28, 28) and valid_labels.dtype == np.int64
    train_ids, valid_ids = train_images[:, 0, 0], valid_images[:, 0, 0]
    expected_train, expected_valid = split_indices(NUM_TRAIN)
    np.testing.assert_array_equal(train_ids, expected_train)
    np.testing.assert_array_equal(valid_ids, expected_valid)
    np.testing.assert_array_equal(train_labels, expected_train % 10)
    np.testing.assert_array_equal(valid_labels, expected_valid % 10)


def test_load_mnist_test_split_is_the_t10k_files_unchanged(mnist_dir):
    images, labels = load_mnist(mnist_dir, "test")
    np.testing.assert_array_equal(images[:, 0, 0], np.arange(NUM_TEST))
    assert images[0, 7, 7] == 200
    np.testing.assert_array_equal(labels, np.arange(NUM_TEST) % 10)
    assert labels.dtype == np.int64


def test_load_mnist_of_a_missing_directory_names_the_directory(tmp_path):
    with pytest.raises(DatasetError, match=r"no-such-dir: MNIST data directory not found"):
        load_mnist(tmp_path / "no-such-dir", "train")


def test_load_mnist_with_a_missing_file_names_the_directory_and_the_file(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=rf"{mnist_dir.name}: missing .*t10k-labels-idx1-ubyte"):
        load_mnist(mnist_dir, "test")


def test_load_mnist_rejects_image_and_label_counts_that_disagree(mnist_dir):
    write_idx(mnist_dir / "t10k-labels-idx1-ubyte", np.arange(NUM_TEST - 1))
    with pytest.raises(DatasetError, match=r"holds 12 images but .* holds 11 labels"):
        load_mnist(mnist_dir, "test")


def test_load_mnist_rejects_an_unknown_split(mnist_dir):
    with pytest.raises(ValueError, match=r"Unknown split 'validation'"):
        load_mnist(mnist_dir, "validation")


# quantize / dequantize


def test_threshold_mode_maps_128_and_above_to_one():
    pixels = np.array([0, 1, 127, 128, 200, 255], dtype=np.uint8)
    np.testing.assert_array_equal(quantize(pixels, "threshold"), [0, 0, 0, 1, 1, 1])
    assert levels_for_mode("threshold", None) == 2


@pytest.mark.parametrize("levels", [2, 3, 4, 16, 256])
def test_gray_levels_run_from_zero_to_k_minus_one_monotonically(levels):
    result = quantize(np.arange(256, dtype=np.uint8), "gray", levels)
    assert result.dtype == np.uint8
    assert result[0] == 0 and result[255] == levels - 1
    assert np.all(np.diff(result.astype(int)) >= 0)
    assert set(result) == set(range(levels))


def test_gray_levels_are_equal_width_bins():
    result = quantize(np.arange(256, dtype=np.uint8), "gray", 4)
    np.testing.assert_array_equal(np.bincount(result), [64, 64, 64, 64])
    assert result[63] == 0 and result[64] == 1


def test_quantize_keeps_the_image_shape():
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    for mode in ("threshold", "bernoulli", "gray"):
        assert quantize(images, mode, levels=8, split="train").shape == (3, 28, 28)


@pytest.mark.parametrize("levels", [None, 1, 257, 2.5, True])
def test_gray_mode_rejects_levels_out_of_range(levels):
    with pytest.raises(ValueError, match=rf"between 2 and 256, got {levels!r}"):
        quantize(np.zeros(4, dtype=np.uint8), "gray", levels)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match=r"Unknown data mode 'grey'"):
        quantize(np.zeros(4, dtype=np.uint8), "grey", 4)
    with pytest.raises(ValueError, match=r"Unknown data mode 'grey'"):
        levels_for_mode("grey", 4)


def test_quantize_rejects_non_uint8_pixels():
    with pytest.raises(ValueError, match=r"uint8 pixels .*float64"):
        quantize(np.zeros(4), "threshold")


def test_bernoulli_mode_is_reproducible_for_the_same_split():
    images = np.full((5, 28, 28), 100, dtype=np.uint8)
    first = quantize(images, "bernoulli", split="valid")
    np.testing.assert_array_equal(first, quantize(images, "bernoulli", split="valid"))


def test_bernoulli_mode_differs_between_splits():
    images = np.full((5, 28, 28), 128, dtype=np.uint8)
    train, valid, test = (
        quantize(images, "bernoulli", split=s) for s in ("train", "valid", "test")
    )
    assert not np.array_equal(train, valid)
    assert not np.array_equal(valid, test)
    assert not np.array_equal(train, test)


def test_bernoulli_mode_uses_the_documented_seed_per_split():
    images = np.full((2, 28, 28), 90, dtype=np.uint8)
    u = np.random.default_rng(BERNOULLI_SEED + 2).integers(0, 255, images.shape, dtype=np.uint8)
    np.testing.assert_array_equal(quantize(images, "bernoulli", split="test"), u < images)


@pytest.mark.parametrize("pixel", [0, 51, 128, 230, 255])
def test_bernoulli_mean_matches_pixel_over_255(pixel):
    images = np.full((100, 28, 28), pixel, dtype=np.uint8)
    result = quantize(images, "bernoulli", split="train")
    assert set(np.unique(result)) <= {0, 1}
    assert abs(result.mean() - pixel / 255) < 0.01  # ~7 standard deviations for 78,400 draws.


def test_bernoulli_mode_needs_a_split():
    with pytest.raises(ValueError, match=r"'bernoulli' needs a split name"):
        quantize(np.zeros(4, dtype=np.uint8), "bernoulli")
    with pytest.raises(ValueError, match=r"Unknown split 'dev'"):
        quantize(np.zeros(4, dtype=np.uint8), "bernoulli", split="dev")


@pytest.mark.parametrize("levels", [2, 3, 7, 16, 256])
def test_dequantize_maps_zero_to_black_and_top_level_to_white(levels):
    result = dequantize(np.array([0, levels - 1]), levels)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, [0, 255])


def test_dequantize_rounds_intermediate_levels():
    np.testing.assert_array_equal(dequantize(np.arange(3), 3), [0, 128, 255])
    np.testing.assert_array_equal(dequantize(np.arange(4), 4), [0, 85, 170, 255])


def test_dequantize_accepts_tensors_and_inverts_256_gray_levels():
    pixels = np.arange(256, dtype=np.uint8)
    levels = torch.from_numpy(quantize(pixels, "gray", 256)).long()
    np.testing.assert_array_equal(dequantize(levels, 256), pixels)


def test_dequantize_rejects_levels_outside_the_range():
    with pytest.raises(ValueError, match=r"0\.\.3, got values from 0 to 4"):
        dequantize(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match=r"between 2 and 256, got 1"):
        dequantize(np.array([0]), 1)


# MnistDataset


def test_dataset_yields_long_images_and_int_labels(mnist_dir):
    dataset = MnistDataset(mnist_dir, "test", "gray", levels=4)
    assert len(dataset) == NUM_TEST and dataset.levels == 4
    image, label = dataset[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.long
    assert isinstance(label, int) and label == 3
    assert image[0, 7, 7] == 200 * 4 // 256 and int(image.max()) <= 3


def test_dataset_exposes_whole_split_tensors_for_batching(mnist_dir):
    dataset = MnistDataset(mnist_dir, "valid", "threshold")
    assert dataset.images.shape == (NUM_TRAIN // 6, 1, 28, 28)
    assert dataset.images.dtype == torch.uint8
    assert dataset.labels.shape == (NUM_TRAIN // 6,) and dataset.labels.dtype == torch.int64
    assert dataset.levels == 2
    assert set(dataset.images.unique().tolist()) <= {0, 1}


def test_dataset_bernoulli_binarisation_is_static(mnist_dir):
    first = MnistDataset(mnist_dir, "train", "bernoulli")
    second = MnistDataset(mnist_dir, "train", "bernoulli")
    assert torch.equal(first.images, second.images)


def test_dataset_rejects_a_bad_mode_before_reading_files(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown data mode 'colour'"):
        MnistDataset(tmp_path / "missing", "train", "colour")


def test_quantization_error_shrinks_with_more_levels_and_is_exact_at_256():
    from model.training.data import quantization_error

    images = np.arange(256, dtype=np.uint8).reshape(16, 16)
    errors = [quantization_error(images, k)["rmse"] for k in (2, 4, 16, 256)]
    assert errors == sorted(errors, reverse=True) and errors[-1] == 0
    two = quantization_error(np.array([0, 100, 200, 255], np.uint8), 2)
    assert two["max_abs"] == 100  # 100 becomes 0; 200 becomes 255 (55 off)


def test_the_levels_command_prints_one_row_per_k(mnist_dir, capsys):
    from model.training.data import main

    assert main(["--data", str(mnist_dir), "--levels", "4", "16"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4")
            or line.startswith("| 16")]
    assert len(rows) == 2 and rows[1].endswith("dB |")


def test_the_levels_command_measures_the_training_digits_strokes(tmp_path, capsys):
    from conftest import striped_digits, write_mnist
    from model.training.data import main

    digits = striped_digits(np.arange(60) % 10)  # bars 2 rows tall and 20 columns wide
    assert main(["--data", str(write_mnist(tmp_path, digits, digits[:10])), "--levels", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Strokes of the thresholded training digits, in pixels: median 20 across (mean 20.00),"
        " median 2 down (mean 2.00).")


def test_ink_runs_are_the_widths_of_strokes_along_a_row():
    ink = np.array([[[0, 1, 1, 1, 0, 1],
                     [1, 1, 0, 0, 0, 0]],
                    [[0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 1, 1, 1]]], bool)
    assert ink_run_lengths(ink).tolist() == [3, 1, 2, 6]
    assert ink_run_lengths(ink.transpose(0, 2, 1)).tolist() == [1, 2, 1, 1, 1] + [1] * 6
    assert ink_run_lengths(np.zeros((2, 3), bool)).tolist() == []
