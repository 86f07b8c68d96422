"""A checkpoint's spatial preprocessing as data, and its first half: the source pixels it reads.

All three reference recipes resize float frames with ``F.interpolate(mode="bilinear",
align_corners=False, antialias=False)``, crop, and normalise. Each output pixel of a crop reads
two source rows and two source columns (its taps) with fixed weights, so a decoded frame is
reduced, as uint8 and where it is decoded, to the pixels its crops read (``gather``: for r21d's
112x112 crop of a 720p frame, 150 KB of its 2.76 MB). The interpolation and normalisation then run
in batches on the network's device (utils/frames/transforms.py). The taps are computed in float32
exactly as torch's kernels compute them, so the result equals the reference order of operations
to float rounding (tests/test_transforms.py).

This module imports no torch: the decoding processes use it (utils/video/worker.py).
"""
import functools
import math
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from video_features.utils.frames.crops import crop_boxes


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


@dataclass(frozen=True, eq=False)  # hashed by identity: a key of the gather's index cache
class Taps:
    """What ``crops`` crops of one frame size read: per crop, the source rows and columns of the
    low taps followed by those of the high taps, and the weights of the high taps (the low ones
    weigh 1 - w)."""

    rows: np.ndarray  # (crops, 2 * h) int64
    columns: np.ndarray  # (crops, 2 * w) int64
    row_weights: np.ndarray  # (crops, h) float32
    column_weights: np.ndarray  # (crops, w) float32

    @property
    def crop_hw(self) -> tuple[int, int]:
        return self.row_weights.shape[1], self.column_weights.shape[1]


def bilinear_taps(in_size: int, out_size: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (low taps, then high taps) and high-tap weights that torch's bilinear resize
    from ``in_size`` to ``out_size`` uses for output pixels start .. start + length - 1."""
    scale = float(np.float32(in_size) / np.float32(out_size))  # torch divides in float32
    dst = np.arange(start, start + length, dtype=np.float64)
    # torch's kernels compute scale * (dst + 0.5) - 0.5 with a fused multiply-add: one rounding.
    src = np.maximum((scale * (dst + 0.5) - 0.5).astype(np.float32), np.float32(0))
    low = src.astype(np.int64)  # floor, since src >= 0
    weight_high = src - low.astype(np.float32)
    high = np.minimum(low + 1, in_size - 1)
    return np.concatenate([low, high]), weight_high


def crop_geometries(preprocessing: Preprocessing, crops: int, height: int, width: int) -> list[tuple[ResizeCrop, bool]]:
    """Each crop as a box of the resized frame, and whether it is mirrored: the checkpoint's centre
    crop for ``crops`` = 1, else the multi-view boxes of utils/frames/crops.py. A mirrored crop (TenCrop's
    flipped five) is the mirror image of the box at the same place in the flipped frame."""
    centre = preprocessing.geometry(height, width)
    if crops == 1:
        return [(centre, False)]
    (resized_h, resized_w), size = centre.resize_hw, preprocessing.crop
    geometries = []
    for box in crop_boxes(crops, resized_h, resized_w, size):
        left = resized_w - box.left - size if box.flip else box.left
        geometries.append((ResizeCrop(centre.resize_hw, (box.top, left), (size, size)), box.flip))
    return geometries


@functools.lru_cache(maxsize=64)
def frame_taps(preprocessing: Preprocessing, crops: int, height: int, width: int) -> Taps:
    """The taps of ``crops`` crops of a ``height`` x ``width`` frame (computed once per frame size)."""
    rows, columns, row_weights, column_weights = [], [], [], []
    for geometry, mirrored in crop_geometries(preprocessing, crops, height, width):
        (out_h, out_w), (top, left), (crop_h, crop_w) = geometry.resize_hw, geometry.top_left, geometry.crop_hw
        crop_rows, wy = bilinear_taps(height, out_h, top, crop_h)
        crop_columns, wx = bilinear_taps(width, out_w, left, crop_w)
        if mirrored:  # output column j reads the box's column crop_w - 1 - j
            crop_columns = np.concatenate([crop_columns[:crop_w][::-1], crop_columns[crop_w:][::-1]])
            wx = wx[::-1]
        rows.append(crop_rows)
        columns.append(crop_columns)
        row_weights.append(wy)
        column_weights.append(wx)
    return Taps(np.stack(rows), np.stack(columns), np.stack(row_weights), np.stack(column_weights))


def gathered_shape(preprocessing: Preprocessing, crops: int) -> tuple[int, int, int, int]:
    """The shape ``gather`` fills for one frame: (crops, 3, 2 * crop, 2 * crop), whatever the frame size."""
    return crops, 3, 2 * preprocessing.crop, 2 * preprocessing.crop


@functools.lru_cache(maxsize=8)
def _byte_indices(taps: Taps, strides: tuple[int, int, int], offset: int) -> np.ndarray:
    """Where each gathered value lies in the memory of an image with these strides, starting
    ``offset`` bytes in: (crops, 3, 2h, 2w), channels first."""
    rows = taps.rows[:, None, :, None] * strides[0]
    columns = taps.columns[:, None, None, :] * strides[1]
    channels = np.arange(3)[None, :, None, None] * strides[2]
    return offset + rows + columns + channels


def _memory_of(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The flat uint8 memory an image view lies in (a decoded frame's padded rows, turned by a view),
    and where the image's first value is in it."""
    root = image
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not root.flags.c_contiguous:
        root = image = np.ascontiguousarray(image)
    root = root.reshape(-1)
    return root, image.__array_interface__["data"][0] - root.__array_interface__["data"][0]


def gather(image: np.ndarray, taps: Taps, out: np.ndarray) -> None:
    """Copies the pixels the crops read from an (H, W, 3) uint8 image (or a view of one, e.g. turned
    upright) into ``out`` (crops, 3, 2h, 2w), channels first, so that the interpolation runs along
    contiguous rows of one channel. One gather by byte offsets: 1.2 ms of CPU for SlowFast's taps of
    a 720p frame, half what two gathers (rows, then columns) take, and less than torch's."""
    memory, offset = _memory_of(image)
    np.take(memory, _byte_indices(taps, image.strides, offset), out=out)
