"""The reference side of the value checks: frames decoded with PyAV as the reference scripts do, and
each family's published preprocessing written out from its source (REFERENCE.md), not taken from
the project. Every constant below is copied from the recipe it names."""
import math

import av
import numpy as np
import torch
import torch.nn.functional as F


def decoded_frames(path: str) -> np.ndarray:
    """Every frame of the video as (T, H, W, 3) uint8 RGB."""
    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


# torchvision's VideoClassification(crop_size=112, resize_size=(128, 171)), the preset of
# R2Plus1D_18_Weights.KINETICS400_V1, applied to float frames as video_features does.
R21D_MEAN = (0.43216, 0.394666, 0.37645)
R21D_STD = (0.22803, 0.22145, 0.216989)
# Our features equal torchvision's network on this recipe within this, fp32 on a CPU, with
# conftest.random_network's weights (features up to ~5). Measured here: 9.5e-7 (r2plus1d_18 through
# the command line), 1.4e-6 (the 34-layer IG-65M model): about 3e-7 of the features' scale.
R21D_TOLERANCE = 5e-6


def r21d_recipe(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, 112, 112): /255, resize to exactly 128x171 (bilinear, no
    antialias), centre crop 112, normalise."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(128, 171), mode="bilinear", align_corners=False, antialias=False)
    # torchvision's CenterCrop: top int(round(16 / 2)) = 8, left int(round(59 / 2)) = round(29.5) = 30
    x = x[:, :, 8:120, 30:142]
    x = (x - torch.tensor(R21D_MEAN).view(1, 3, 1, 1)) / torch.tensor(R21D_STD).view(1, 3, 1, 1)
    return x.permute(1, 0, 2, 3)


def reference_features(network: torch.nn.Module, clips: torch.Tensor) -> np.ndarray:
    """A torchvision VideoResNet's feature, the input of ``fc``: its forward with the head taken off."""
    head, network.fc = network.fc, torch.nn.Identity()
    try:
        with torch.inference_mode():
            return network.eval()(clips).numpy()
    finally:
        network.fc = head


def timesformer_recipe(frames: np.ndarray, size: int = 224, spatial_index: int = 1) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, size, size), the official test transform (facebookresearch/
    TimeSformer, datasets/kinetics.py with PySlowFast's transform.py): /255, short side scaled to
    ``size`` (long side floored, bilinear, no antialias), ``uniform_crop`` with ``spatial_index``
    (1: the centre, the single-view test's crop), mean 0.45, std 0.225."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    height, width = x.shape[-2:]
    if width < height:
        resized = (int(math.floor(height / width * size)), size)
    else:
        resized = (size, int(math.floor(width / height * size)))
    x = F.interpolate(x, size=resized, mode="bilinear", align_corners=False, antialias=False)
    rows, columns = uniform_crop_box(*resized, size, spatial_index)
    x = x[..., rows, columns]
    x = (x - 0.45) / 0.225
    return x.permute(1, 0, 2, 3)


def uniform_crop_box(height: int, width: int, size: int, spatial_index: int) -> tuple[slice, slice]:
    """PySlowFast's uniform_crop: offsets ceil((h - size) / 2), ceil((w - size) / 2); along the long
    side 0, that, or long - size for spatial index 0, 1, 2."""
    y, x = int(math.ceil((height - size) / 2)), int(math.ceil((width - size) / 2))
    if height > width:
        y = (0, y, height - size)[spatial_index]
    else:
        x = (0, x, width - size)[spatial_index]
    return slice(y, y + size), slice(x, x + size)
