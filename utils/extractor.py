"""The Python API: an extractor of one network's features, ready to run on videos.

    from video_features import Extractor

    with Extractor("r21d", device="cpu", pretrained=False) as extractor:
        outputs = extractor.extract("sample/a.mp4")

It joins the three parts: the model (a registered family's checkpoint and its network), the
pipeline that feeds it, and the options (utils/options.py), which it checks as the command line does.
"""
import dataclasses
import inspect
import weakref
from typing import Iterable, Iterator, Mapping, Optional, Union

import numpy as np
import torch

from video_features.utils.console import library_warnings_as_lines
from video_features.utils.errors import ExtractionError
from video_features.utils.frames.slots import SlotLayout
from video_features.utils.frames.transforms import preprocess
from video_features.utils.machine import MachineShare, share_from_environment
from video_features.utils.network.device import resolve_device
from video_features.utils.network.labels import class_names
from video_features.utils.network.precision import check_precision
from video_features.utils.network.runner import Inference, set_torch_globals
from video_features.utils.network.weights import build_with_weights
from video_features.utils.options import OPTIONS, Options, make_options
from video_features.utils.pipeline.pipeline import Pipeline
from video_features.utils.pipeline.video_in_flight import VideoResult
from video_features.utils.progress import Progress
from video_features.utils.recipe import model_and_windows, recipe
from video_features.utils.video.pool import resolve_decode_workers
from video_features.utils.video.protocol import DecodeSettings
from video_features.utils.video.segments import MIN_SEGMENT_SECONDS


class Extractor:
    def __init__(self, feature_type: str = "r21d", *, machine_share: Optional[MachineShare] = None, **options):
        """An extractor of ``feature_type`` features (r21d, slowfast, timesformer), set up by the same
        keyword options as the command line (listed below), each checked as there: a bad value raises
        SettingsError with the command line's one line. Missing weights raise WeightsError; random
        weights only with ``pretrained=False``.

        ``machine_share``: this job's share of its machine (its GPU with device="auto", and its
        cores), for a caller that runs several jobs on one machine; by default what torchrun's or
        Slurm's environment says (utils/machine.py).

        The decoding processes start with the first extraction and serve the next ones: close the
        extractor (or use it in a ``with`` block) to stop them; they stop at exit anyway."""
        library_warnings_as_lines()
        self.options = make_options(feature_type=feature_type, **options)
        self.share = machine_share or share_from_environment()
        family, checkpoint, plan = model_and_windows(self.options)
        self.device = resolve_device(self.options.device, self.share)
        check_precision(self.options.precision, self.device)  # before any download
        set_torch_globals(self.device, self.options.precision, self.options.compile, self.options.cudnn_benchmark)
        network, checkpoint, weights_file = build_with_weights(family, checkpoint, self.options.weights_path,
                                                               self.options.pretrained)
        self.inference = Inference(network, self.device, self.options.precision, family.channels_last,
                                   self.options.compile)
        self.recipe = recipe(self.options, family, checkpoint, weights_file, plan)
        self.feature_type, self.model_name = self.recipe.feature_type, self.recipe.model_name
        self.checkpoint, self.plan = checkpoint, plan
        self.pipeline = self._pipeline()
        # the decoding processes stop when the extractor goes, or at exit
        self._finalizer = weakref.finalize(self, self.pipeline.close)

    def _pipeline(self) -> Pipeline:
        options = self.options
        decoding = DecodeSettings(self.plan, SlotLayout(self.checkpoint.preprocessing, options.crops),
                                  options.extraction_fps, options.fps_method.value, options.tmp_folder,
                                  options.keep_tmp_files, max_segments=1, min_segment_seconds=MIN_SEGMENT_SECONDS,
                                  remote=options.remote_policy)
        workers = resolve_decode_workers(options.decode_workers, self.device.type, self.share.cores)
        return Pipeline(self.inference, decoding, self.feature_type, options.batch_size, workers, self.share.cores,
                        self.recipe.crop_reduce, keep_logits=options.show_pred, keep_partial=options.keep_partial)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB frames -> (N, C, h, w) network input on the device, or (N, crops, C, h, w)."""
        return preprocess(images, self.checkpoint.preprocessing, self.options.crops, self.device)

    def settings(self) -> dict:
        """What decides this extractor's features (utils/recipe.py), recorded beside saved outputs."""
        return self.recipe.settings()

    @property
    def output_keys(self) -> list[str]:
        return self.recipe.output_keys

    @property
    def progress(self) -> Progress:
        """How far the extraction under way (or the last one) has come: videos, windows, videos being read."""
        return self.pipeline.progress

    def machine(self) -> dict:
        """This job's share of its machine and its decoding processes, as a run log records it."""
        return {**self.share.describe(), "decode_workers": self.pipeline.decode_workers}

    def class_names(self) -> list[str]:
        return class_names(self.checkpoint.classes)

    def extract(self, path: str) -> dict[str, np.ndarray]:
        """Features of one video: {feature_type: (N, D), 'timestamps_ms': (N, 2), 'fps': ()}; with crops > 1
        the features are (N, crops, D), or (N, D) with crop_reduce="mean". ExtractionError says why not."""
        (result,) = self.extract_many([path])
        if result.error:
            raise ExtractionError(f"{path}: {result.error}")
        return result.outputs

    def extract_many(self, paths: Iterable[Union[str, VideoResult]], progress: bool = False,
                     sizes: Optional[Mapping[str, int]] = None) -> Iterator[VideoResult]:
        """One VideoResult per path, as each finishes; a video's error is in its result and the others
        go on. Windows of consecutive videos share batches. An item may also be a result the caller
        has decided on (a video it skips), passed on in its place; the paths are read lazily, as
        decoding processes become free. ``progress`` shows a bar over the windows of long videos.
        A path may be a URL (``https://``, ``s3://``; utils/video/remote.py); ``sizes``: the bytes of
        URLs, where known, which saves a request each."""
        return self.pipeline.extract_many(paths, progress, sizes)

    def close(self) -> None:
        """Stops the decoding processes (a later extraction starts them again)."""
        self.pipeline.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _signature_with_options(init) -> inspect.Signature:
    """``__init__``'s signature with every option as a keyword parameter, so that help() and
    editors list them; the declaration stays the one of ``Options``."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for field in dataclasses.fields(Options):
        positional = field.name == "feature_type"
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if positional else inspect.Parameter.KEYWORD_ONLY
        parameters.append(inspect.Parameter(field.name, kind, default=field.default, annotation=field.type))
        if field.name == "feature_type":
            parameters.append(inspect.Parameter("machine_share", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation=Optional[MachineShare]))
    return inspect.Signature(parameters)


Extractor.__init__.__signature__ = _signature_with_options(Extractor.__init__)
Extractor.__init__.__doc__ += "\n\n        Options:\n" + "\n".join(
    f"          {name}: {meaning}" for name, meaning in OPTIONS.items())
