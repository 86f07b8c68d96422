"""The second half of preprocessing, on the network's device and for many frames at once: bilinear
interpolation of the gathered taps (utils/frames/preprocessing.py), channel order and normalisation.

``interpolate_normalize`` runs a fixed number of kernels whatever the number of frames or crops.
Its arithmetic is, element by element, that of the reference order of operations: float / 255,
resize (width first, then height, the order torch's separable kernel combines the four taps in),
crop, channels reversed for BGR networks, (x - mean) / std. Every step is one elementwise operation
rounded to float32, and the one division a GPU would compute otherwise (by a Python scalar, as a
multiplication by its reciprocal) is a table made on the CPU, so a CUDA device gets the same input
as the CPU, bit for bit.
"""
import functools

import numpy as np
import torch

from video_features.utils.frames.preprocessing import Preprocessing, frame_taps, gather, gathered_shape


@functools.lru_cache(maxsize=16)
def unit_scale(device: torch.device) -> torch.Tensor:
    """x / 255 for each uint8 value x, divided on the CPU and copied to ``device``. On CUDA, ``x / 255``
    is computed as ``x * (1 / 255)``: 126 of the 256 values would differ from the CPU's in the last bit."""
    return (torch.arange(256, dtype=torch.float32) / 255).to(device)


@functools.lru_cache(maxsize=16)
def normalization(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """mean and std as (3, 1, 1) tensors on ``device``, made once."""
    return tuple(torch.tensor(values, dtype=torch.float32).view(3, 1, 1).to(device) for values in (mean, std))


def interpolate_normalize(pixels: torch.Tensor, row_weights: torch.Tensor, column_weights: torch.Tensor,
                          mean: tuple, std: tuple, bgr: bool = False) -> torch.Tensor:
    """(N, crops, 3, 2h, 2w) gathered uint8 taps and their (crops, h) and (crops, w) high-tap
    weights -> (N, crops, 3, h, w) float32 network input."""
    h, w = row_weights.shape[1], column_weights.shape[1]
    wx = column_weights[:, None, None, :]  # (crops, 1, 1, w): broadcast over frames, channels, rows
    wy = row_weights[:, None, :, None]
    values = unit_scale(pixels.device).index_select(0, pixels.flatten().int()).view(pixels.shape)
    rows = values[..., :w] * (1 - wx) + values[..., w:] * wx
    out = rows[..., :h, :] * (1 - wy) + rows[..., h:, :] * wy
    if bgr:
        out = out.flip(-3)
    mean, std = normalization(tuple(mean), tuple(std), out.device)
    return (out - mean) / std


def preprocess(images: np.ndarray, preprocessing: Preprocessing, crops: int = 1,
               device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Both halves for (N, H, W, 3) uint8 RGB frames of one size: (N, 3, crop, crop) float network
    input on ``device``, or (N, crops, 3, crop, crop) for ``crops`` > 1. The pipeline runs the two
    halves in different processes; this is them in one call (the Python API, tests, benchmarks)."""
    images = np.asarray(images)  # also a CPU tensor
    count, height, width, _ = images.shape
    taps = frame_taps(preprocessing, crops, height, width)
    pixels = np.empty((count, *gathered_shape(preprocessing, crops)), dtype=np.uint8)
    for image, out in zip(images, pixels):
        gather(image, taps, out)
    row_weights, column_weights = (torch.from_numpy(w).to(device) for w in (taps.row_weights, taps.column_weights))
    p = preprocessing
    out = interpolate_normalize(torch.from_numpy(pixels).to(device), row_weights, column_weights, p.mean, p.std, p.bgr)
    return out[:, 0] if crops == 1 else out
