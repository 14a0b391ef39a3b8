import pytest
import torch

from model.masked import MaskedConv2d, build_mask, channel_groups


def test_mask_a_sees_rows_above_and_pixels_to_the_left_but_not_the_centre():
    mask = build_mask(torch.zeros(1), torch.zeros(1), (5, 5), "A")[0, 0]
    expected = torch.tensor([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ], dtype=torch.float)
    assert torch.equal(mask, expected)


def test_mask_b_also_sees_the_centre():
    mask = build_mask(torch.zeros(1), torch.zeros(1), (3, 3), "B")[0, 0]
    assert torch.equal(mask, torch.tensor([[1.0, 1, 1], [1, 1, 0], [0, 0, 0]]))


@pytest.mark.parametrize(("mask_type", "expected"), [
    ("A", [[0, 0, 0], [1, 0, 0], [1, 1, 0]]),  # G sees R; B sees R and G
    ("B", [[1, 0, 0], [1, 1, 0], [1, 1, 1]]),  # ... and each sees its own channel
])
def test_colour_groups_at_the_centre_follow_r_then_g_then_b(mask_type, expected):
    groups = channel_groups(3, 3)
    mask = build_mask(groups, groups, (3, 3), mask_type)
    assert torch.equal(mask[:, :, 1, 1], torch.tensor(expected, dtype=torch.float))
    assert mask[:, :, 0, :].eq(1).all()  # every channel of the rows above is visible


def test_hidden_channels_are_split_into_contiguous_colour_blocks():
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="7 channels cannot be split into 3"):
        channel_groups(7, 3)


def test_masked_conv_keeps_the_image_size_and_applies_its_mask():
    conv = MaskedConv2d(3, 6, 5, "A", colours=3)
    x = torch.randn(2, 3, 9, 11)
    assert conv(x).shape == (2, 6, 9, 11)
    torch.nn.init.ones_(conv.weight)
    assert torch.equal(conv.masked_weight(), conv.mask)


@pytest.mark.parametrize("kernel_size", [2, (3, 4)])
def test_even_kernels_are_rejected(kernel_size):
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(1, 1, kernel_size, "B")


def test_unknown_mask_type_is_rejected():
    with pytest.raises(ValueError, match="'C'"):
        MaskedConv2d(1, 1, 3, "C")
