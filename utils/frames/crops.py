"""Where the crops of the ``crops`` option lie in the resized frame: the official multi-view tests.

- 3: PySlowFast's ``uniform_crop`` test views: the crop at the start, the middle and the end of
  the frame's long side (height when h > w, else width), the short side centred at
  ``ceil(margin / 2)``. Every family uses this rule, R(2+1)D included.
- 5: torchvision's ``FiveCrop``: top-left, top-right, bottom-left, bottom-right, centre (the
  centre at ``int(round(margin / 2))``, torchvision's ``center_crop``).
- 10: torchvision's ``TenCrop`` (vertical_flip=False): those five, then the same five of the
  horizontally flipped frame.

Each crop reads its own taps of the family's resize (utils/frames/preprocessing.py): the taps of an
output pixel do not depend on the crop, so a crop holds the values that resizing the whole frame
and slicing it would give, and a frame is still decoded once for all its crops.
"""
import math
from dataclasses import dataclass

CROP_COUNTS = (1, 3, 5, 10)  # the crops option's values


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
    """The boxes of ``crops`` square crops of side ``size`` in a ``height`` x ``width`` resized frame
    (crops > 1; one crop is the checkpoint's own centre crop)."""
    five = five_crop_boxes(height, width, size)
    flipped = [CropBox(box.top, box.left, flip=True) for box in five]
    return {3: uniform_crop_boxes(height, width, size), 5: five, 10: five + flipped}[crops]
