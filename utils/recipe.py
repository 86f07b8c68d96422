"""What decides a run's features, and so whether saved outputs can be reused: the model and its
weights, the windows, the frame rate and how it is reached, the precision and the crops. A run
records it beside each video's outputs (``Recipe.settings()``); a later run skips a video whose
record equals its own, and status=true counts by the same rule (``recipe_of_run``), without a
device or a network."""
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from video_features.models.registry import Checkpoint, Family, load_family
from video_features.utils.errors import SettingsError
from video_features.utils.frames.windows import WindowPlan, network_offsets
from video_features.utils.network.weights import load_state_file, resolve_checkpoint
from video_features.utils.options import Options


@dataclass(frozen=True)
class Recipe:
    family: Family
    checkpoint: Checkpoint  # as its weights file describes it (a file may bring its own preprocessing)
    weights_file: Optional[str]  # None: random weights, on request
    plan: WindowPlan
    extraction_fps: Optional[float]
    fps_method: str
    precision: str
    crops: int
    crop_reduce: str

    @property
    def feature_type(self) -> str:
        return self.family.feature_type

    @property
    def model_name(self) -> str:
        return self.checkpoint.name

    @property
    def output_keys(self) -> list[str]:
        return [self.feature_type, "timestamps_ms", "fps"]

    def output_dir(self, output_path: str) -> str:
        return os.path.join(output_path, self.feature_type, self.model_name)

    def settings(self) -> dict:
        """The record saved beside a video's outputs, as it reads back from JSON: outputs made otherwise
        (other weights, windows, frame rate, method, precision or crops) are not reused."""
        weights = "random"
        if self.weights_file:
            stat = os.stat(self.weights_file)
            weights = {"file": os.path.abspath(self.weights_file), "bytes": stat.st_size,
                       "modified_ns": stat.st_mtime_ns}
        preprocessing = self.checkpoint.preprocessing
        settings = {
            "feature_type": self.feature_type,
            "model_name": self.model_name,
            "weights": weights,
            "stack_size": self.plan.stack,
            "step_size": self.plan.step,
            "network_frames": list(self.plan.offsets),
            "extraction_fps": self.extraction_fps,
            "fps_method": self.fps_method if self.extraction_fps else None,
            "precision": self.precision,
            "crops": self.crops,
            "crop_reduce": self.crop_reduce,
            "preprocessing": {**dataclasses.asdict(preprocessing), "crop_offset": preprocessing.crop_offset.__name__},
        }
        return json.loads(json.dumps(settings))  # lists, not tuples


def model_of(options: Options) -> tuple[Family, Checkpoint]:
    """The feature type's family and the checkpoint record asked for; SettingsError for an unknown
    one. No torch: the command line checks this before it is imported."""
    try:
        family = load_family(options.feature_type, options.model_package)
        return family, family.checkpoint(options.model_name)
    except KeyError as error:
        raise SettingsError(error.args[0]) from None


def window_of(options: Options, checkpoint: Checkpoint) -> tuple[int, int]:
    """(stack, step) of the windows; SettingsError for a window too short for the network."""
    stack = options.stack_size or checkpoint.stack_size
    if checkpoint.num_frames is not None and stack < checkpoint.num_frames:
        raise SettingsError(f"stack_size={stack} is too short for {checkpoint.name}: a window must hold at least "
                            f"the {checkpoint.num_frames} frames the network sees")
    return stack, options.step_size or checkpoint.step_size


def model_and_windows(options: Options) -> tuple[Family, Checkpoint, WindowPlan]:
    """The family, the checkpoint record and the windows, with the frames of each the network sees."""
    family, checkpoint = model_of(options)
    stack, step = window_of(options, checkpoint)
    offsets = network_offsets(stack, checkpoint.num_frames, checkpoint.sampling)
    return family, checkpoint, WindowPlan(stack, step, offsets)


def recipe(options: Options, family: Family, checkpoint: Checkpoint, weights_file: Optional[str],
           plan: WindowPlan) -> Recipe:
    crop_reduce = options.crop_reduce.value if options.crops > 1 else "none"  # nothing to reduce in one crop
    return Recipe(family, checkpoint, weights_file, plan, options.extraction_fps, options.fps_method.value,
                  options.precision.value, options.crops, crop_reduce)


def recipe_of_run(options: Options) -> Recipe:
    """The recipe a run of ``options`` records, found without a device or a network and without
    downloading: WeightsError when the official weights are not in the cache (no output can have
    been made with them here)."""
    family, checkpoint, plan = model_and_windows(options)
    weights_file = None
    if options.pretrained or options.weights_path:
        weights_file = resolve_checkpoint(checkpoint.url, options.weights_path, True, checkpoint.sha256_prefix,
                                          download=False)
        _, checkpoint = family.read_state(load_state_file(weights_file), checkpoint)
    return recipe(options, family, checkpoint, weights_file, plan)
