"""feature_type=timesformer: TimeSformer features, the 768-d CLS token after the final LayerNorm.

The official test-time recipe (facebookresearch/TimeSformer, ``datasets/kinetics.py`` and
``ssv2.py`` with their configs' 3-crop test, of which we take the centre crop): frames / 255,
short side resized to the crop size (224 or 448; long side floored, bilinear, no antialias),
crop at offset ceil(margin / 2) (PySlowFast's uniform_crop), normalise with 0.45 / 0.225.
Kinetics models see ``num_frames`` frames picked by linspace over ``num_frames x sampling_rate``
source frames; SSv2 models the middle frame of each of ``num_frames`` segments of a window.

The SSv2 models take BGR: the official SSv2 loader reads frames with cv2.imdecode and, for this
architecture, never reverses them (pack_pathway_output, which honours REVERSE_INPUT_CHANNEL, is
skipped), so they were trained and tested on BGR frames.

The official ``.pyth`` files hold the weights under ``model_state`` with keys prefixed ``model.``;
Hugging Face checkpoints load through a key map, and bring their own normalisation (0.5 / 0.5,
with which transformers' conversion script validated them).
"""
import dataclasses
import math
import os

from video_features.models.registry import Checkpoint, Family, read_official, register
from video_features.models.timesformer.hf_layout import from_hf_layout, is_hf_layout
from video_features.utils.frames.preprocessing import Preprocessing

SSV2_STACK = 128  # 4.3 s at 30 fps, about an SSv2 clip's length
CLASSES = {  # see LABELS.md
    "k400": "kinetics400",
    "k600": os.path.join(os.path.dirname(__file__), "kinetics600_classes.txt"),
    "ssv2": os.path.join(os.path.dirname(__file__), "something_something_v2_classes.txt"),
}
NUM_CLASSES = {"k400": 400, "k600": 600, "ssv2": 174}


def _release(dropbox_id: str, file_stem: str, frames: int, crop: int, dataset: str, rate: int = 0) -> Checkpoint:
    """One release of the official README: TimeSformer_divST_{file_stem}.pyth. ``rate``: Kinetics'
    source frames between sampled frames (the window is frames x rate); SSv2 has none."""
    window = frames * rate if rate else SSV2_STACK
    name = f"timesformer_divst_{file_stem.lower()}"
    return Checkpoint(
        name,
        architecture="divided_space_time",
        url=f"https://www.dropbox.com/s/{dropbox_id}/TimeSformer_divST_{file_stem}.pyth?dl=1",
        stack_size=window,
        step_size=window,
        preprocessing=Preprocessing(
            resize=crop, crop=crop, crop_offset=math.ceil, mean=(0.45,) * 3, std=(0.225,) * 3, bgr=dataset == "ssv2"
        ),
        classes=CLASSES[dataset],
        num_classes=NUM_CLASSES[dataset],
        num_frames=frames,
        sampling="segment_middle" if dataset == "ssv2" else "linspace",
        key_prefix="model.",
    )


CHECKPOINTS = (
    _release("g5t24we9gl5yk88", "8x32_224_K400", 8, 224, "k400", 32),
    _release("6f0x172lpqy3oxt", "16x16_448_K400", 16, 448, "k400", 16),
    _release("r1iuxahif3sgimo", "96x4_224_K400", 96, 224, "k400", 4),
    _release("4h2qt41m2z3aqrb", "8x32_224_K600", 8, 224, "k600", 32),
    _release("ft1e92g2vhvxecv", "16x16_448_K600", 16, 448, "k600", 16),
    _release("857rx6xeclxfhdg", "96x4_224_K600", 96, 224, "k600", 4),
    _release("tybhuml57y24wpm", "8_224_SSv2", 8, 224, "ssv2"),
    _release("9t68uzk8w2fpfnv", "16_448_SSv2", 16, 448, "ssv2"),
    _release("3f1rm2al8mhprwa", "64_224_SSv2", 64, 224, "ssv2"),
)


def build_network(checkpoint: Checkpoint):
    from video_features.models.timesformer.network import TimeSformer  # torch: only when a network is built

    return TimeSformer(
        num_classes=checkpoint.num_classes, img_size=checkpoint.preprocessing.crop, num_frames=checkpoint.num_frames
    )


def read_state(state: dict, checkpoint: Checkpoint) -> tuple[dict, Checkpoint]:
    """An official file, a bare state dict, or a Hugging Face checkpoint (.safetensors / .bin)."""
    if not is_hf_layout(state):
        return read_official(state, checkpoint)
    hf_normalisation = dataclasses.replace(checkpoint.preprocessing, mean=(0.5,) * 3, std=(0.5,) * 3)
    return from_hf_layout(state), dataclasses.replace(checkpoint, preprocessing=hf_normalisation)


register(Family("timesformer", CHECKPOINTS, build_network, read_state=read_state))
