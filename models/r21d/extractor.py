"""feature_type=r21d: R(2+1)D features (the 512-d input of the Kinetics head)."""
import torch

from models.base_extractor import BaseExtractor, ModelSpec
from models.r21d.network import build_network, features_and_logits
from utils.labels import kinetics400
from utils.transforms import ResizeCrop, resize_crop_normalize

IG65M_RELEASE = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"

# torchvision's VideoClassification(crop_size=112, resize_size=(128, 171)) preset: resize to
# exactly 128x171 (aspect not kept), centre crop 112, Kinetics mean/std. The crop offsets are
# torchvision's int(round((128 - 112) / 2)), int(round((171 - 112) / 2)).
GEOMETRY = ResizeCrop(resize_hw=(128, 171), top_left=(8, 30), crop_hw=(112, 112))
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)


class ExtractR21D(BaseExtractor):
    feature_type = "r21d"
    channels_last = True
    models = {
        spec.name: spec
        for spec in (
            ModelSpec(
                "r2plus1d_18_16_kinetics",
                "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
                stack_size=16,
                step_size=16,
                weights_sha256_prefix="91a641e6",
            ),
            # ig65m-pytorch's own loader does not hash-check, so neither do we
            ModelSpec(
                "r2plus1d_34_32_ig65m_ft_kinetics",
                IG65M_RELEASE + "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth",
                stack_size=32,
                step_size=32,
            ),
            ModelSpec(
                "r2plus1d_34_8_ig65m_ft_kinetics",
                IG65M_RELEASE + "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth",
                stack_size=8,
                step_size=8,
            ),
        )
    }

    def build_network(self) -> torch.nn.Module:
        return build_network(self.model_name)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        return resize_crop_normalize(frames, GEOMETRY, MEAN, STD)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features_and_logits(self.network, clips)

    def class_names(self) -> list[str]:
        return kinetics400()
