"""Several spatial crops of every frame (the ``crops`` option): the official multi-view tests.

- 3: PySlowFast's ``uniform_crop`` test views: the crop at the start, the middle and the end of
  the frame's long side (height when h > w, else width), the short side centred at
  ``ceil(margin / 2)``. Every family uses this rule, R(2+1)D included.
- 5: torchvision's ``FiveCrop``: top-left, top-right, bottom-left, bottom-right, centre (the
  centre at ``int(round(margin / 2))``, torchvision's ``center_crop``).
- 10: torchvision's ``TenCrop`` (vertical_flip=False): those five, then the same five of the
  horizontally flipped frame.

The crops are taken from the family's resized frame. It is resized and normalised once per frame
(the bilinear taps of an output pixel do not depend on the crop, so each crop holds the values
a crop-only resize would give) and the crops are slices of it: one decode and one resize for
all of them.
"""
import math
from dataclasses import dataclass

import torch

from utils.config import CROP_COUNTS
from utils.transforms import Preprocessing, ResizeCrop, resize_crop_normalize


@dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    flip: bool = False  # the box of the horizontally flipped frame (TenCrop's last five)


def uniform_crop_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """PySlowFast's ``uniform_crop`` for spatial index 0, 1, 2."""
    top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if height > width:
        return [CropBox(y, left) for y in (0, top, height - size)]
    return [CropBox(top, x) for x in (0, left, width - size)]


def five_crop_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """torchvision's ``five_crop`` order: top-left, top-right, bottom-left, bottom-right, centre."""
    bottom, right = height - size, width - size
    centre = CropBox(int(round(bottom / 2.0)), int(round(right / 2.0)))
    return [CropBox(0, 0), CropBox(0, right), CropBox(bottom, 0), CropBox(bottom, right), centre]


def crop_boxes(crops: int, height: int, width: int, size: int) -> list[CropBox]:
    """The boxes of ``crops`` square crops of side ``size`` in a ``height`` x ``width`` frame."""
    if crops == 3:
        return uniform_crop_boxes(height, width, size)
    if crops == 5:
        return five_crop_boxes(height, width, size)
    if crops == 10:
        five = five_crop_boxes(height, width, size)
        return five + [CropBox(box.top, box.left, flip=True) for box in five]
    raise ValueError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {crops!r}")


@dataclass(frozen=True)
class MultiCrop:
    """A checkpoint's preprocessing with ``crops`` crops instead of its centre crop."""

    preprocessing: Preprocessing
    crops: int

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB frames -> (N, crops, 3, crop, crop) float network input."""
        _, height, width, _ = frames.shape
        p = self.preprocessing
        resized_hw = p.geometry(height, width).resize_hw
        whole = ResizeCrop(resize_hw=resized_hw, top_left=(0, 0), crop_hw=resized_hw)
        resized = resize_crop_normalize(frames, whole, p.mean, p.std, p.bgr)  # (N, 3, h, w)
        size, resized_width = p.crop, resized_hw[1]
        views = []
        for box in crop_boxes(self.crops, *resized_hw, size):
            # The box at (top, left) of the flipped frame is the mirrored box of the frame, flipped:
            # cheaper than flipping the whole frame, and the same values.
            left = resized_width - box.left - size if box.flip else box.left
            view = resized[:, :, box.top : box.top + size, left : left + size]
            views.append(view.flip(-1) if box.flip else view)
        return torch.stack(views, dim=1).contiguous()
