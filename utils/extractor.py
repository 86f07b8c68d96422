"""The Python API: a configured extractor, ready to run on videos.

    from utils.config import load_config
    from utils.extractor import Extractor

    extractor = Extractor(load_config({"feature_type": "r21d", "pretrained": False}))
    outputs = extractor.extract("sample/a.mp4")

It joins the three parts: the model (a registered family's checkpoint and its network), the
pipeline that feeds it, and the options of a config.
"""
import dataclasses
import json
import os
import weakref
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from models.registry import load_family
from utils.errors import ExtractionError, SettingsError
from utils.frames.transforms import preprocess
from utils.frames.windows import WindowPlan, network_offsets
from utils.machine import MachineShare, share_from_environment
from utils.network.device import resolve_device
from utils.network.labels import class_names
from utils.network.precision import check_precision
from utils.network.runner import Inference
from utils.network.weights import build_with_weights
from utils.pipeline import Pipeline, VideoResult
from utils.video.pool import resolve_decode_workers
from utils.video.segments import MIN_SEGMENT_SECONDS
from utils.frames.slots import SlotLayout
from utils.video.worker import Settings


class Extractor:
    def __init__(self, cfg: DictConfig, share: Optional[MachineShare] = None):
        """``share``: this job's share of its machine (its GPU with device=auto, and its cores), for a
        caller that runs several jobs on one machine; by default what torchrun's or Slurm's
        environment says (utils/machine.py).

        The decoding processes start with the first extraction and serve the next ones: close the
        extractor (or use it in a ``with`` block) to stop them; they stop at exit anyway."""
        share = share or share_from_environment()
        try:
            self.family = load_family(cfg.feature_type, cfg.model_package)
            checkpoint = self.family.checkpoint(cfg.model_name)
        except KeyError as error:
            raise SettingsError(error.args[0]) from None
        stack = cfg.stack_size or checkpoint.stack_size
        step = cfg.step_size or checkpoint.step_size
        try:
            offsets = network_offsets(stack, checkpoint.num_frames, checkpoint.sampling)
        except ValueError as error:
            raise SettingsError(f"stack_size={stack} is too short for {checkpoint.name}: {error}") from None
        self.device = resolve_device(cfg.device, share)
        check_precision(cfg.precision, self.device)  # before any download
        network, self.checkpoint, self.weights_file = build_with_weights(
            self.family, checkpoint, cfg.weights_path, cfg.pretrained
        )
        self.inference = Inference(network, self.device, cfg.precision, self.family.channels_last, cfg.compile,
                                   cfg.cudnn_benchmark)
        self.feature_type = self.family.feature_type
        self.model_name = self.checkpoint.name
        self.plan = WindowPlan(stack, step, offsets)
        self.crops = cfg.crops
        self.crop_reduce = cfg.crop_reduce.value if self.crops > 1 else "none"  # nothing to reduce in one crop
        self.extraction_fps = cfg.extraction_fps
        self.fps_method = cfg.fps_method.value
        decoding = Settings(self.plan, SlotLayout(self.checkpoint.preprocessing, self.crops), cfg.extraction_fps,
                            self.fps_method, cfg.tmp_path, cfg.keep_tmp_files, max_segments=1,
                            min_segment_seconds=MIN_SEGMENT_SECONDS)
        self.precision = cfg.precision.value
        self.share = share
        workers = resolve_decode_workers(cfg.decode_workers, self.device.type, share.cores)
        self.pipeline = Pipeline(self.inference, decoding, self.feature_type, cfg.batch_size, workers, share.cores,
                                 self.crop_reduce, keep_logits=cfg.show_pred, keep_partial=cfg.keep_partial)
        # the decoding processes stop when the extractor goes, or at exit
        self._finalizer = weakref.finalize(self, self.pipeline.close)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB frames -> (N, C, h, w) network input on the device, or (N, crops, C, h, w)."""
        return preprocess(images, self.checkpoint.preprocessing, self.crops, self.device)

    def settings(self) -> dict:
        """What decides this extractor's features: recorded beside saved outputs, so that outputs
        made otherwise (other weights, windows, frame rate, method, precision or crops) are not reused."""
        weights = "random"
        if self.weights_file:
            stat = os.stat(self.weights_file)
            weights = {"file": os.path.abspath(self.weights_file), "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
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
        return json.loads(json.dumps(settings))  # as a JSON record reads back: lists, not tuples

    @property
    def output_keys(self) -> list[str]:
        return [self.feature_type, "timestamps_ms", "fps"]

    def class_names(self) -> list[str]:
        return class_names(self.checkpoint.classes)

    def extract(self, path: str) -> dict[str, np.ndarray]:
        """Features of one video: {feature_type: (N, D), 'timestamps_ms': (N, 2), 'fps': ()}; with crops > 1
        the features are (N, crops, D), or (N, D) with crop_reduce=mean."""
        (result,) = self.extract_many([path])
        if result.error:
            raise ExtractionError(f"{path}: {result.error}")
        return result.outputs

    def extract_many(self, paths: Sequence[str], claim: Optional[Callable[[str], Optional[str]]] = None,
                     progress: bool = False) -> Iterator[VideoResult]:
        """One VideoResult per path, as each finishes; see Pipeline.extract_many."""
        return self.pipeline.extract_many(paths, claim, progress)

    def close(self) -> None:
        """Stops the decoding processes (a later extraction starts them again)."""
        self.pipeline.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
