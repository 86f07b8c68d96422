"""The Python API: a configured extractor, ready to run on videos.

    from utils.config import load_config
    from utils.extractor import Extractor

    extractor = Extractor(load_config({"feature_type": "r21d", "pretrained": False}))
    outputs = extractor.extract("sample/a.mp4")

It joins the three parts: the model (a registered family's checkpoint and its network), the
pipeline that feeds it, and the options of a config.
"""
import os
import weakref
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from utils.errors import ExtractionError
from utils.frames.transforms import preprocess
from utils.machine import MachineShare, share_from_environment
from utils.network.device import resolve_device
from utils.network.labels import class_names
from utils.network.precision import check_precision
from utils.network.runner import Inference
from utils.network.weights import build_with_weights
from utils.recipe import model_and_windows, recipe
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
        family, checkpoint, plan = model_and_windows(cfg)
        self.device = resolve_device(cfg.device, share)
        check_precision(cfg.precision, self.device)  # before any download
        network, checkpoint, weights_file = build_with_weights(family, checkpoint, cfg.weights_path, cfg.pretrained)
        self.inference = Inference(network, self.device, cfg.precision, family.channels_last, cfg.compile,
                                   cfg.cudnn_benchmark)
        self.recipe = recipe(cfg, family, checkpoint, weights_file, plan)
        self.feature_type, self.model_name = self.recipe.feature_type, self.recipe.model_name
        self.checkpoint, self.plan, self.crops = checkpoint, plan, cfg.crops
        self.extraction_fps = cfg.extraction_fps
        tmp_path = cfg.tmp_path or os.path.join(cfg.output_path, ".tmp")  # a run writes only under output_path
        decoding = Settings(plan, SlotLayout(checkpoint.preprocessing, self.crops), cfg.extraction_fps,
                            cfg.fps_method.value, tmp_path, cfg.keep_tmp_files, max_segments=1,
                            min_segment_seconds=MIN_SEGMENT_SECONDS)
        self.share = share
        workers = resolve_decode_workers(cfg.decode_workers, self.device.type, share.cores)
        self.pipeline = Pipeline(self.inference, decoding, self.feature_type, cfg.batch_size, workers, share.cores,
                                 self.recipe.crop_reduce, keep_logits=cfg.show_pred, keep_partial=cfg.keep_partial)
        # the decoding processes stop when the extractor goes, or at exit
        self._finalizer = weakref.finalize(self, self.pipeline.close)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB frames -> (N, C, h, w) network input on the device, or (N, crops, C, h, w)."""
        return preprocess(images, self.checkpoint.preprocessing, self.crops, self.device)

    def settings(self) -> dict:
        """What decides this extractor's features (utils/recipe.py), recorded beside saved outputs."""
        return self.recipe.settings()

    @property
    def output_keys(self) -> list[str]:
        return self.recipe.output_keys

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
