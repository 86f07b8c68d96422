"""A slot: a stretch of memory shared by a decoding process (utils/video/worker.py), which fills it,
and the pipeline (utils/frames/device_feed.py), which copies it to the device. It holds the
high-tap weights of its frames' crops (float32), then up to ``frames`` frames of gathered uint8
taps (utils/frames/preprocessing.py). Each process has SLOTS of them.
"""
from dataclasses import dataclass

import numpy as np

from video_features.utils.frames.preprocessing import Preprocessing, gathered_shape

SLOT_BYTES = 16 << 20  # the pixels of one slot: 64 frames of r21d's taps, 21 of SlowFast's
MAX_SLOT_FRAMES = 64
SLOTS = 3  # per process: one being filled, one on its way, one being copied out


@dataclass(frozen=True)
class SlotLayout:
    """How a slot is laid out: the high-tap weights of its frames' crops (float32), then the pixels."""

    preprocessing: Preprocessing
    crops: int

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return gathered_shape(self.preprocessing, self.crops)

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape))

    @property
    def frames(self) -> int:
        return max(1, min(MAX_SLOT_FRAMES, SLOT_BYTES // self.frame_bytes))

    @property
    def weights(self) -> int:
        """float32 values: the crops' row weights, then their column weights."""
        return 2 * self.crops * self.preprocessing.crop

    @property
    def pixels_offset(self) -> int:
        return -(-4 * self.weights // 64) * 64

    @property
    def bytes(self) -> int:
        return self.pixels_offset + self.frames * self.frame_bytes

    def views(self, buffer, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The slot's weights (crops, crop) twice and pixels (frames, *frame_shape), as views of ``buffer``."""
        start = slot * self.bytes
        weights = np.frombuffer(buffer, np.float32, self.weights, start).reshape(2, self.crops, self.preprocessing.crop)
        pixels = np.frombuffer(buffer, np.uint8, self.frames * self.frame_bytes, start + self.pixels_offset)
        return weights[0], weights[1], pixels.reshape(self.frames, *self.frame_shape)
