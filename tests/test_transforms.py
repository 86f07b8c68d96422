import numpy as np
import pytest
import torch
import torch.nn.functional as F

from video_features.utils.frames.preprocessing import ResizeCrop, Taps, bilinear_taps, gather, short_side_size
from video_features.utils.frames.transforms import interpolate_normalize, unit_scale

MEAN, STD = (0.45, 0.4, 0.35), (0.225, 0.25, 0.2)


def reference(frames, geometry):
    """The reference order of operations: float, resize the whole frame, crop, normalise."""
    x = frames.permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=geometry.resize_hw, mode="bilinear", align_corners=False, antialias=False)
    (top, left), (h, w) = geometry.top_left, geometry.crop_hw
    x = x[:, :, top : top + h, left : left + w]
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def ours(frames, geometry):
    """Both halves: the taps gathered from each uint8 frame, then interpolated and normalised."""
    (in_h, in_w), (out_h, out_w) = frames.shape[1:3], geometry.resize_hw
    (top, left), (h, w) = geometry.top_left, geometry.crop_hw
    rows, row_weights = bilinear_taps(in_h, out_h, top, h)
    columns, column_weights = bilinear_taps(in_w, out_w, left, w)
    taps = Taps(rows[None], columns[None], row_weights[None], column_weights[None])
    pixels = np.empty((len(frames), 1, 3, 2 * h, 2 * w), dtype=np.uint8)
    for frame, out in zip(frames.numpy(), pixels):
        gather(frame, taps, out)
    weights = (torch.from_numpy(taps.row_weights), torch.from_numpy(taps.column_weights))
    return interpolate_normalize(torch.from_numpy(pixels), *weights, MEAN, STD)[:, 0]


@pytest.mark.parametrize(
    "in_hw, geometry",
    [
        ((720, 1280), ResizeCrop((128, 171), (8, 30), (112, 112))),  # r21d, downscale
        ((144, 176), ResizeCrop((256, 312), (0, 28), (256, 256))),  # upscale
        ((361, 483), ResizeCrop((256, 342), (0, 43), (256, 256))),  # odd sizes
        ((101, 57), ResizeCrop((30, 20), (1, 2), (25, 15))),  # portrait, tiny
        ((224, 224), ResizeCrop((224, 224), (0, 0), (224, 224))),  # identity resize
    ],
)
def test_gathered_taps_interpolated_match_interpolate(in_hw, geometry):
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, *in_hw, 3), dtype=torch.uint8)  # noise: the worst case
    result = ours(frames, geometry)
    assert result.shape == (2, 3, *geometry.crop_hw)
    torch.testing.assert_close(result, reference(frames, geometry), atol=2e-6, rtol=0)


def test_short_side_size_floors_the_long_side():
    assert short_side_size(720, 1280, 256) == (256, 455)
    assert short_side_size(1280, 720, 256) == (455, 256)
    assert short_side_size(270, 481, 224) == (224, 399)  # 399.01
    assert short_side_size(100, 100, 224) == (224, 224)


def test_every_device_gets_the_cpus_division_by_255():
    # a CUDA device computes x / 255 (a Python scalar) as x * (1 / 255): 126 of the 256 values would
    # differ in the last bit; the transform's table holds the CPU's true quotients, whatever the device
    values = torch.arange(256, dtype=torch.float32)
    true_quotients, reciprocal_products = values / 255, values * (1 / 255)
    assert (true_quotients != reciprocal_products).sum() == 126
    assert torch.equal(unit_scale(torch.device("cpu")), true_quotients)
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 16, 16).expand(1, 1, 3, 16, 16).contiguous()
    half = torch.full((1, 8), 0.5)
    for weights in (torch.zeros(1, 8), half):  # the left / top taps alone, then their mean
        out = interpolate_normalize(pixels, weights, weights, (0.0,) * 3, (1.0,) * 3)
        left_top = true_quotients.view(16, 16)[:8, :8]
        if weights is half:
            rows = true_quotients.view(16, 16)[:, :8] * 0.5 + true_quotients.view(16, 16)[:, 8:] * 0.5
            left_top = rows[:8] * 0.5 + rows[8:] * 0.5
        assert torch.equal(out[0, 0, 0], left_top)
