"""Spatial preprocessing shared by every model: bilinear resize, crop and normalise.

All three reference recipes resize float frames with ``F.interpolate(mode="bilinear",
align_corners=False, antialias=False)`` and then crop. Converting a whole 720p frame to float
costs far more than the network needs from it, so ``resize_crop_normalize`` gathers only the
source pixels that the cropped output reads, on uint8, and interpolates those. The source
coordinates are computed in float32 exactly as torch's kernels do, so the result equals the
reference order of operations to float rounding (tests/test_transforms.py checks it).
"""
import functools
import math
from dataclasses import dataclass
from typing import Callable, Union

import torch


@dataclass(frozen=True)
class ResizeCrop:
    """Resize a frame to ``resize_hw`` and keep the ``crop_hw`` box whose corner is ``top_left``."""

    resize_hw: tuple[int, int]
    top_left: tuple[int, int]
    crop_hw: tuple[int, int]


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (h, w) when the short side is scaled to ``size``, long side floored (pytorchvideo, PySlowFast)."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


@dataclass(frozen=True)
class Preprocessing:
    """A checkpoint's spatial preprocessing, as data: resize, centre crop, normalise, channel order.

    ``resize`` is an exact (h, w) (aspect not kept, torchvision's video preset) or the short side's
    length (long side floored, pytorchvideo and PySlowFast). ``crop_offset`` turns the half-margin
    into the crop's corner: the references differ there (torchvision's centre crop uses Python's
    round, PySlowFast's ``uniform_crop`` ceil).
    """

    resize: Union[int, tuple[int, int]]
    crop: int
    crop_offset: Callable[[float], int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False  # the network was trained on BGR frames

    def geometry(self, height: int, width: int) -> ResizeCrop:
        """The resize and the centre crop of a ``height`` x ``width`` frame."""
        resized = self.resize if isinstance(self.resize, tuple) else short_side_size(height, width, self.resize)
        top_left = tuple(int(self.crop_offset((side - self.crop) / 2)) for side in resized)
        return ResizeCrop(resize_hw=resized, top_left=top_left, crop_hw=(self.crop, self.crop))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB frames -> (N, 3, crop, crop) float network input."""
        _, height, width, _ = frames.shape
        return resize_crop_normalize(frames, self.geometry(height, width), self.mean, self.std, self.bgr)


def _bilinear_taps(in_size: int, out_size: int, start: int, length: int):
    """Source indices and weights torch's bilinear resize uses for output pixels start..start+length-1."""
    scale = (torch.tensor(in_size, dtype=torch.float32) / out_size).double()
    dst = torch.arange(start, start + length, dtype=torch.float64)
    # torch's kernels compute scale * (dst + 0.5) - 0.5 with a fused multiply-add: one rounding.
    src = (scale * (dst + 0.5) - 0.5).float().clamp(min=0)
    low = src.long()  # floor, since src >= 0
    weight_high = src - low
    high = (low + 1).clamp(max=in_size - 1)
    return torch.cat([low, high]), weight_high


@functools.lru_cache(maxsize=64)
def _resize_constants(in_hw: tuple[int, int], geometry: ResizeCrop, mean: tuple, std: tuple, device: torch.device):
    """Everything resize_crop_normalize needs besides the frames, made once per frame size and device.

    Made per frame, these small tensors cost a host-to-device copy each; on a GPU every such copy
    waited for the network's queued work, which held a CUDA pipeline at 1 % of the network's rate.
    """
    (out_h, out_w), (top, left), (crop_h, crop_w) = geometry.resize_hw, geometry.top_left, geometry.crop_hw
    rows, wy = _bilinear_taps(in_hw[0], out_h, top, crop_h)
    columns, wx = _bilinear_taps(in_hw[1], out_w, left, crop_w)
    constants = (
        rows,
        columns,
        wy.view(crop_h, 1),
        wx,
        torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
        torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
    )
    return tuple(tensor.to(device) for tensor in constants)


def resize_crop_normalize(
    frames: torch.Tensor, geometry: ResizeCrop, mean: tuple, std: tuple, bgr: bool = False
) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames -> (N, 3, crop_h, crop_w) float32, scaled to [0, 1] and normalised.

    Equal, to float rounding, to: float / 255 -> bilinear resize to ``resize_hw`` (align_corners
    False, no antialias) -> crop -> channels reversed if ``bgr`` -> (x - mean) / std.
    """
    _, in_h, in_w, _ = frames.shape
    crop_h, crop_w = geometry.crop_hw
    rows, columns, wy, wx, mean, std = _resize_constants((in_h, in_w), geometry, tuple(mean), tuple(std), frames.device)
    # Channels first right after the row gather (a view): every later op then runs along
    # contiguous rows of one channel: 1.75x less CPU per 720p frame than over interleaved RGB.
    pixels = frames.index_select(1, rows).permute(0, 3, 1, 2).index_select(3, columns)
    pixels = pixels.float() / 255
    # Width first, then height: the order torch's separable kernel combines the four taps in.
    rows = pixels[..., :crop_w] * (1 - wx) + pixels[..., crop_w:] * wx
    out = rows[..., :crop_h, :] * (1 - wy) + rows[..., crop_h:, :] * wy
    if bgr:
        out = out.flip(1)
    return (out - mean) / std
