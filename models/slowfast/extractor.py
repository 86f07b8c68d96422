"""feature_type=slowfast: SlowFast features (the 2304-d pooled input of the Kinetics head).

Pytorchvideo's Kinetics inference recipe (its torch hub tutorial): a window of 64 source frames
(128 for the 16x8 model) is subsampled uniformly to the network's 32 (64) fast frames, scaled to
[0, 1], short side resized to 256 (bilinear, no antialias), centre-cropped to 256 and normalised
with mean 0.45 / std 0.225. The slow pathway's frames are picked inside the network.
"""
import functools

import torch

from models.base_extractor import BaseExtractor, ModelSpec
from models.slowfast.network import ALPHA, CONFIGS, build_network
from utils.config import ConfigError
from utils.labels import kinetics400
from utils.transforms import ResizeCrop, resize_crop_normalize, short_side_center_crop
from utils.weights import load_state_file, load_strict

MODEL_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"
SIDE = 256  # short side after resizing
CROP = 256
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


@functools.lru_cache(maxsize=16)
def center_crop_geometry(height: int, width: int) -> ResizeCrop:
    """Short side to SIDE (long side floored), then the centre CROP x CROP box.

    The tutorial crops with torchvision's CenterCropVideo: offset int(round((size - CROP) / 2)),
    Python's round, so a half goes to the even neighbour. pytorchvideo's own uniform_crop uses
    ceil instead; the two differ when the margin is 4k + 1 pixels (e.g. 201: 100 vs 101).
    """
    return short_side_center_crop(height, width, SIDE, CROP, round)


class ExtractSlowFast(BaseExtractor):
    feature_type = "slowfast"
    channels_last = True  # measured on a 2-core CPU: a 256 forward of R50 ~30 % faster, same outputs to 3e-8
    models = {
        spec.name: spec
        for spec in (
            ModelSpec("slowfast_r50", MODEL_ZOO + "SLOWFAST_8x8_R50.pyth", stack_size=64, step_size=64),
            ModelSpec("slowfast_r101", MODEL_ZOO + "SLOWFAST_8x8_R101.pyth", stack_size=64, step_size=64),
            ModelSpec(
                "slowfast_16x8_r101_50_50", MODEL_ZOO + "SLOWFAST_16x8_R101_50_50.pyth", stack_size=128, step_size=128
            ),
        )
    }

    def frame_offsets(self, stack_size: int) -> list[int]:
        """The network's fast frames, spread uniformly over the window (pytorchvideo's
        UniformTemporalSubsample). The count is fixed: the head's pooling spans exactly it."""
        frames = CONFIGS[self.model_name].num_frames
        if stack_size < frames:
            raise ConfigError(
                f"stack_size={stack_size} is too short for {self.model_name}: a window must hold at least "
                f"{frames} frames (its temporal pooling spans {frames} fast / {frames // ALPHA} slow frames)"
            )
        return torch.linspace(0, stack_size - 1, frames).long().tolist()

    def build_network(self) -> torch.nn.Module:
        return build_network(self.model_name)

    def load_weights(self, network: torch.nn.Module, checkpoint_path: str) -> None:
        state = load_state_file(checkpoint_path)
        # the official .pyth files hold the weights under "model_state"; a bare state dict also loads
        load_strict(network, state.get("model_state", state), checkpoint_path)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = frames.shape
        return resize_crop_normalize(frames, center_crop_geometry(height, width), MEAN, STD)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(clips)

    def class_names(self) -> list[str]:
        return kinetics400()  # all three checkpoints are Kinetics-400, in the standard class order
