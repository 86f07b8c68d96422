"""The SlowFast architectures of pytorchvideo's model zoo, as data: depths, temporal kernels and the
frames a clip holds (models/slowfast/network.py builds them; no torch needed to read them)."""
from dataclasses import dataclass
from typing import Union

TemporalKernels = Union[int, tuple[int, ...]]  # conv_a's temporal size: per stage, or per block


@dataclass(frozen=True)
class SlowFastConfig:
    depths: tuple[int, int, int, int]  # residual blocks in res2-res5
    fusion_kernel: int  # temporal size of the fast-to-slow fusion convs
    slow_conv_a: tuple[TemporalKernels, ...]  # per stage
    fast_conv_a: tuple[TemporalKernels, ...]
    num_frames: int  # fast frames per clip; the head's temporal pooling spans exactly these


# res4 of the 16x8 R101 "50_50" model: temporal conv_a in its first 6 blocks only
_RES4_50_50 = (3,) * 6 + (1,) * 17

CONFIGS = {
    "slowfast_r50": SlowFastConfig((3, 4, 6, 3), 7, (1, 1, 3, 3), (3, 3, 3, 3), num_frames=32),
    "slowfast_r101": SlowFastConfig((3, 4, 23, 3), 5, (1, 1, 3, 3), (3, 3, 3, 3), num_frames=32),
    "slowfast_16x8_r101_50_50": SlowFastConfig(
        (3, 4, 23, 3), 5, (1, 1, _RES4_50_50, 3), (3, 3, _RES4_50_50, 3), num_frames=64
    ),
}
