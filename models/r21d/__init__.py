"""feature_type=r21d: R(2+1)D features, the 512-d input of the Kinetics-400 head.

Preprocessing is torchvision's ``VideoClassification(crop_size=112, resize_size=(128, 171))``
preset applied to float frames, as video_features does: resize to exactly 128x171 (aspect not
kept), centre crop 112 at torchvision's ``int(round(margin / 2))``, Kinetics mean and std.
"""
from video_features.models.registry import Checkpoint, Family, register
from video_features.utils.frames.preprocessing import Preprocessing

IG65M_RELEASE = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
KINETICS_PRESET = Preprocessing(
    resize=(128, 171), crop=112, crop_offset=round, mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989)
)


def _ig65m(name: str, file: str, window: int) -> Checkpoint:
    """An IG-65M R(2+1)D-34 fine-tuned on Kinetics-400; ig65m-pytorch's own loader does not
    hash-check its files, so neither do we."""
    return Checkpoint(name, architecture="r2plus1d_34_ig65m", url=IG65M_RELEASE + file, stack_size=window,
                      step_size=window, preprocessing=KINETICS_PRESET, classes="kinetics400")


CHECKPOINTS = (
    Checkpoint(
        "r2plus1d_18_16_kinetics",
        architecture="r2plus1d_18",
        url="https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
        sha256_prefix="91a641e6",
        stack_size=16,
        step_size=16,
        preprocessing=KINETICS_PRESET,
        classes="kinetics400",
    ),
    _ig65m("r2plus1d_34_32_ig65m_ft_kinetics", "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", 32),
    _ig65m("r2plus1d_34_8_ig65m_ft_kinetics", "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", 8),
)

def build_network(checkpoint: Checkpoint):
    from video_features.models.r21d import network  # torch: only when a network is built

    return network.build_network(checkpoint)


register(Family("r21d", CHECKPOINTS, build_network, channels_last=True))
