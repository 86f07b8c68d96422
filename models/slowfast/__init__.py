"""feature_type=slowfast: SlowFast features, the 2304-d pooled input of the Kinetics-400 head.

Pytorchvideo's Kinetics inference recipe (its torch hub tutorial): a window of 64 source frames
(128 for the 16x8 model) is subsampled uniformly (linspace) to the network's 32 (64) fast frames,
scaled to [0, 1], short side resized to 256 (bilinear, no antialias), centre-cropped to 256 and
normalised with mean 0.45 / std 0.225. The tutorial crops with torchvision's CenterCropVideo:
offset ``int(round(margin / 2))``, Python's round, so a half goes to the even neighbour
(pytorchvideo's own uniform_crop would ceil). The slow pathway's frames are picked inside the
network. The official ``.pyth`` files hold the weights under ``model_state``.
"""
from video_features.models.registry import Checkpoint, Family, register
from video_features.models.slowfast.architectures import CONFIGS
from video_features.utils.frames.preprocessing import Preprocessing

MODEL_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"
TUTORIAL = Preprocessing(resize=256, crop=256, crop_offset=round, mean=(0.45,) * 3, std=(0.225,) * 3)


def _checkpoint(name: str, file: str, window: int) -> Checkpoint:
    return Checkpoint(
        name,
        architecture=name,
        url=MODEL_ZOO + file,
        stack_size=window,
        step_size=window,
        preprocessing=TUTORIAL,
        classes="kinetics400",
        num_frames=CONFIGS[name].num_frames,  # the head's temporal pooling spans exactly these
        sampling="linspace",
    )


CHECKPOINTS = (
    _checkpoint("slowfast_r50", "SLOWFAST_8x8_R50.pyth", 64),
    _checkpoint("slowfast_r101", "SLOWFAST_8x8_R101.pyth", 64),
    _checkpoint("slowfast_16x8_r101_50_50", "SLOWFAST_16x8_R101_50_50.pyth", 128),
)

# channels_last_3d: measured on a 2-core CPU, a 256 forward of R50 ~30 % faster, same outputs to 3e-8
def build_network(checkpoint: Checkpoint):
    from video_features.models.slowfast import network  # torch: only when a network is built

    return network.build_network(checkpoint)


register(Family("slowfast", CHECKPOINTS, build_network, channels_last=True))
