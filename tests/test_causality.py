"""Back-propagate from every output position and channel in turn and check which input
pixels receive gradient (the self-check of karpathy/pytorch-made, for images)."""

import pytest
import torch

from conftest import tiny_model


def without_head_relus(model):
    """The head is pointwise (1x1 convolutions), so it cannot change which pixels an output
    sees; but a ReLU in it that is off at some pixel for every input hides all of them."""
    for index, layer in enumerate(model.head):
        if isinstance(layer, torch.nn.ReLU):
            model.head[index] = torch.nn.Identity()
    return model


def input_gradients(model, class_label=None, trials: int = 8) -> torch.Tensor:
    """|d(logits at pixel (i, j), channel c) / d(input)| as (H, W, C, C, H, W), summed over
    a few random inputs so that a ReLU that happens to be off cannot hide a path."""
    cfg = model.config
    model = model.double()
    C, H, W = cfg.channels, cfg.height, cfg.width
    n = H * W * C
    torch.manual_seed(1)
    # Wide-ranging inputs swing every unit through its ReLU at some trial.
    x = 3 * torch.randn(trials, 1, C, H, W, dtype=torch.double).expand(trials, n, C, H, W)
    x = x.reshape(trials * n, C, H, W).clone().requires_grad_(True)
    labels = None if class_label is None else torch.full((trials * n,), class_label)
    out = model.features(x, model.class_index(labels, trials * n, x.device))
    out = out.view(trials, n, C, cfg.outputs_per_channel, H, W)
    rows, cols, chans = (t.flatten() for t in torch.meshgrid(
        torch.arange(H), torch.arange(W), torch.arange(C), indexing="ij"))
    picked = out[:, torch.arange(n), chans, :, rows, cols]
    picked.sum().backward()
    return x.grad.view(trials, H, W, C, C, H, W).abs().sum(0)


CASES = [
    pytest.param(arch, colours, first_k, k, label, id=f"{arch}-C{colours}-k{first_k}{k}-{label}")
    for arch in ("gated", "pixelcnn")
    for colours in (1, 3)
    for first_k, k in ((3, 3), (5, 3), (7, 5))
    for label in (None, 2)
]


@pytest.mark.parametrize(("arch", "colours", "first_k", "k", "label"), CASES)
def test_no_output_sees_its_own_value_or_anything_after_it(arch, colours, first_k, k, label):
    model = tiny_model(architecture=arch, channels=colours, first_kernel_size=first_k,
                       kernel_size=k, num_classes=3, distribution="categorical",
                       hidden_channels=6, height=6, width=7)
    grad = input_gradients(model, label)
    H, W, C = 6, 7, colours
    for i in range(H):
        for j in range(W):
            for c in range(C):
                g = grad[i, j, c]  # (C, H, W)
                future = g.flatten(1)[:, i * W + j + 1:]
                assert future.abs().sum() == 0, f"output {(i, j, c)} sees a later pixel"
                # Same pixel: the same channel (mask A) and the channels after it.
                assert g[c:, i, j].abs().sum() == 0, f"output {(i, j, c)} sees itself"


def visible_region(cfg, i, j):
    """Earlier pixels a gated model must see: the rectangle its two stacks cover."""
    kernels = [cfg.first_kernel_size] + [cfg.kernel_size] * (cfg.layers - 1)
    up = sum(k // 2 for k in kernels)  # vertical kernels have k//2 + 1 rows each
    side = sum(k // 2 for k in kernels)
    pixels = [(r, col) for r in range(max(0, i - 1 - up), i)
              for col in range(max(0, j - side), min(cfg.width, j + side + 1))]
    return pixels + [(i, col) for col in range(max(0, j - side), j)]


@pytest.mark.parametrize("colours", [1, 3])
@pytest.mark.parametrize(("first_k", "k"), [(3, 3), (7, 3), (5, 5)])
@pytest.mark.parametrize("label", [None, 1])
def test_gated_model_has_no_blind_spot(colours, first_k, k, label):
    model = without_head_relus(tiny_model(
        architecture="gated", channels=colours, first_kernel_size=first_k, kernel_size=k,
        num_classes=3, height=7, width=8, layers=3, hidden_channels=12))
    cfg = model.config
    grad = input_gradients(model, label)
    for i in range(cfg.height):
        for j in range(cfg.width):
            for c in range(colours):
                g = grad[i, j, c].abs().sum(0)  # over input channels
                for r, col in visible_region(cfg, i, j):
                    assert g[r, col] > 0, f"output {(i, j)} is blind to earlier pixel {(r, col)}"
                # Earlier channels of the same pixel are seen too.
                earlier_channels = grad[i, j, c][:c, i, j]
                assert (earlier_channels != 0).all(), f"output {(i, j, c)} misses R or G"


def test_classic_pixelcnn_has_the_blind_spot_and_the_gated_model_does_not():
    # One row up and just beyond the first kernel's reach to the right: a stack of mask-B
    # kernels only widens its view while climbing, so the classic model never sees it.
    shape = dict(first_kernel_size=3, kernel_size=3, layers=3, height=8, width=9)
    i, j = 5, 3
    classic = input_gradients(tiny_model(architecture="pixelcnn", **shape))[i, j, 0, 0]
    gated = input_gradients(without_head_relus(tiny_model(architecture="gated", **shape)))
    gated = gated[i, j, 0, 0]
    blind = (i - 1, j + 2)
    assert classic[blind] == 0
    assert gated[blind] != 0
    # The classic model does see further to the right higher up: it is a blind spot,
    # not a narrow field of view.
    assert classic[i - 3, j + 3] != 0


def test_the_classic_residual_block_runs_its_kxk_convolution_on_half_the_channels():
    """PixelRNN's figure 5: 2h channels, 1x1 down to h, kxk on h, 1x1 back up to 2h."""
    model = tiny_model(architecture="pixelcnn", hidden_channels=12, channels=3,
                       distribution="categorical")
    down, middle, up = (layer for layer in model.blocks[0].body if hasattr(layer, "weight"))
    assert (down.in_channels, down.out_channels, down.kernel_size) == (12, 6, (1, 1))
    assert (middle.in_channels, middle.out_channels, middle.kernel_size) == (6, 6, (3, 3))
    assert (up.in_channels, up.out_channels, up.kernel_size) == (6, 12, (1, 1))
