"""feature_type=timesformer: TimeSformer features (the 768-d normed CLS token).

The official test-time recipe (facebookresearch/TimeSformer, ``datasets/kinetics.py`` and
``ssv2.py`` with their configs' 3-crop test, of which we take the centre crop): frames /255,
short side resized to the crop size (224 or 448; long side floored, bilinear, no antialias),
crop at offset ceil((size - crop) / 2), normalise. Kinetics models see ``num_frames`` frames
picked by linspace over ``num_frames x sampling_rate`` source frames; SSv2 models see the middle
frame of each of ``num_frames`` segments.
"""
import functools
import math
import os
from dataclasses import dataclass
from typing import Optional

import torch

from models.base_extractor import BaseExtractor, ModelSpec
from models.timesformer.network import TimeSformer, from_hf_layout, is_hf_layout
from utils.config import ConfigError
from utils.labels import kinetics400
from utils.transforms import ResizeCrop, resize_crop_normalize, short_side_center_crop
from utils.weights import load_state_file, load_strict

# The official checkpoints were trained and tested with these; the Hugging Face conversions
# were validated with 0.5 / 0.5 (transformers' conversion script), which load_weights switches to.
OFFICIAL_MEAN, OFFICIAL_STD = 0.45, 0.225
HF_MEAN, HF_STD = 0.5, 0.5
SSV2_STACK = 128  # 4.3 s at 30 fps, about an SSv2 clip's length


@dataclass(frozen=True)
class Variant:
    """One release of facebookresearch/TimeSformer's README."""

    dropbox_id: str
    file_stem: str  # TimeSformer_divST_{file_stem}.pyth
    num_frames: int
    crop: int
    dataset: str  # k400 | k600 | ssv2
    sampling_rate: Optional[int] = None  # Kinetics: source frames between sampled frames

    @property
    def url(self) -> str:
        return f"https://www.dropbox.com/s/{self.dropbox_id}/TimeSformer_divST_{self.file_stem}.pyth?dl=1"

    @property
    def num_classes(self) -> int:
        return {"k400": 400, "k600": 600, "ssv2": 174}[self.dataset]

    @property
    def window(self) -> int:
        return self.num_frames * self.sampling_rate if self.sampling_rate else SSV2_STACK


VARIANTS = {
    "timesformer_divst_8x32_224_k400": Variant("g5t24we9gl5yk88", "8x32_224_K400", 8, 224, "k400", 32),
    "timesformer_divst_16x16_448_k400": Variant("6f0x172lpqy3oxt", "16x16_448_K400", 16, 448, "k400", 16),
    "timesformer_divst_96x4_224_k400": Variant("r1iuxahif3sgimo", "96x4_224_K400", 96, 224, "k400", 4),
    "timesformer_divst_8x32_224_k600": Variant("4h2qt41m2z3aqrb", "8x32_224_K600", 8, 224, "k600", 32),
    "timesformer_divst_16x16_448_k600": Variant("ft1e92g2vhvxecv", "16x16_448_K600", 16, 448, "k600", 16),
    "timesformer_divst_96x4_224_k600": Variant("857rx6xeclxfhdg", "96x4_224_K600", 96, 224, "k600", 4),
    "timesformer_divst_8_224_ssv2": Variant("tybhuml57y24wpm", "8_224_SSv2", 8, 224, "ssv2"),
    "timesformer_divst_16_448_ssv2": Variant("9t68uzk8w2fpfnv", "16_448_SSv2", 16, 448, "ssv2"),
    "timesformer_divst_64_224_ssv2": Variant("3f1rm2al8mhprwa", "64_224_SSv2", 64, 224, "ssv2"),
}

LABEL_FILES = {"k600": "kinetics600_classes.txt", "ssv2": "something_something_v2_classes.txt"}  # see LABELS.md


def linspace_offsets(stack: int, frames: int) -> list[int]:
    """Kinetics test sampling: ``frames`` indices spread evenly over [0, stack - 1], truncated."""
    return torch.linspace(0, stack - 1, frames).long().tolist()


def segment_offsets(stack: int, frames: int) -> list[int]:
    """SSv2 test sampling: the middle frame of each of ``frames`` segments of the window.

    The official loader's formula, with numpy's round (half to even) and Python's round alike.
    """
    size = (stack - 1) / frames
    return [(round(size * i) + round(size * (i + 1))) // 2 for i in range(frames)]


@functools.lru_cache(maxsize=16)
def center_crop_geometry(height: int, width: int, crop: int) -> ResizeCrop:
    """Short side to ``crop``, then the centre square at the official offset (uniform_crop, ceil)."""
    return short_side_center_crop(height, width, crop, crop, math.ceil)


@functools.cache
def _label_file(name: str) -> list[str]:
    with open(os.path.join(os.path.dirname(__file__), name), encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file if line.strip()]


class ExtractTimeSformer(BaseExtractor):
    feature_type = "timesformer"
    models = {
        name: ModelSpec(name, variant.url, stack_size=variant.window, step_size=variant.window)
        for name, variant in VARIANTS.items()
    }
    mean, std = OFFICIAL_MEAN, OFFICIAL_STD

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.model_name]

    def frame_offsets(self, stack_size: int) -> list[int]:
        frames = self.variant.num_frames
        if stack_size < frames:
            raise ConfigError(
                f"stack_size={stack_size} is too short for {self.model_name}: a window must hold at least "
                f"{frames} frames (the network sees {frames} distinct frames per window)"
            )
        if self.variant.dataset == "ssv2":
            return segment_offsets(stack_size, frames)
        return linspace_offsets(stack_size, frames)

    def build_network(self) -> torch.nn.Module:
        variant = self.variant
        return TimeSformer(num_classes=variant.num_classes, img_size=variant.crop, num_frames=variant.num_frames)

    def load_weights(self, network: torch.nn.Module, checkpoint_path: str) -> None:
        """The official ``.pyth`` ({'model_state': {'model.' + key: ...}}), a bare state dict, or a
        Hugging Face checkpoint (.safetensors / .bin), whose normalisation then applies."""
        state = load_state_file(checkpoint_path)
        state = state.get("model_state", state)
        hf_layout = is_hf_layout(state)
        if hf_layout:
            state = from_hf_layout(state)
        else:
            state = {key.removeprefix("model."): value for key, value in state.items()}
        load_strict(network, state, checkpoint_path)
        if hf_layout:
            self.mean, self.std = HF_MEAN, HF_STD

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = frames.shape
        geometry = center_crop_geometry(height, width, self.variant.crop)
        out = resize_crop_normalize(frames, geometry, (self.mean,) * 3, (self.std,) * 3)
        if self.variant.dataset == "ssv2":
            # The official SSv2 loader reads frames with cv2.imdecode (BGR) and, for this
            # architecture, never reverses them (pack_pathway_output, which honours
            # REVERSE_INPUT_CHANNEL, is skipped): the SSv2 models were trained and tested on BGR.
            # Mean and std are equal per channel, so flipping after normalising is exact.
            out = out.flip(1)
        return out

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(clips)

    def class_names(self) -> list[str]:
        dataset = self.variant.dataset
        return kinetics400() if dataset == "k400" else _label_file(LABEL_FILES[dataset])
