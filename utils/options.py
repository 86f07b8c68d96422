"""The options: one typed declaration (``Options``) that the command line and the Python API share.

OmegaConf checks every value's type against it: the command line through Hydra's ConfigStore
(utils/cli/hydra_config.py), the API through ``make_options``, with the same one-line errors.
What types cannot say (positive numbers, options that exclude each other) ``check_options`` says,
in one line that names the option. Nothing here imports torch or Hydra.
"""
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Union

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from video_features.utils.errors import SettingsError
from video_features.utils.frames.crops import CROP_COUNTS
from video_features.utils.video.remote_retry import DEFAULT_POLICY, Policy


class FpsMethod(str, Enum):
    filter = "filter"
    reencode = "reencode"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class CropReduce(str, Enum):
    none = "none"
    mean = "mean"


class OnExtraction(str, Enum):
    print = "print"
    save_numpy = "save_numpy"
    save_pickle = "save_pickle"
    save_parquet = "save_parquet"


def option(default: Any, meaning: str):
    return field(default=default, metadata={"help": meaning})


@dataclass
class Options:
    """Every option of a run. Built by the command line (Hydra) or by ``make_options``; read-only by
    convention: ``dataclasses.replace`` makes a changed copy."""

    feature_type: str = option("r21d", "the network family: a config of configs/feature_type/ (see Models below)")
    model_name: Optional[str] = option(None, "the network (see Models below); null = the feature type's first model")
    stack_size: Optional[int] = option(None, "frames per window; null = the model's default")
    step_size: Optional[int] = option(None, "frames from one window's start to the next; null = the model's default")
    extraction_fps: Optional[float] = option(
        None, "resample the video to this rate before cutting windows; null = its own rate")
    fps_method: FpsMethod = option(
        FpsMethod.filter,
        "filter: FFmpeg's fps filter inside this process | reencode: ffmpeg CLI re-encode into tmp_path"
    )
    crops: int = option(
        1, "spatial crops per window: 1 (the model's centre crop) | 3 (start, middle, end of the long side) | "
        "5 (torchvision FiveCrop) | 10 (TenCrop): features (N, crops, D)"
    )
    crop_reduce: CropReduce = option(CropReduce.none, "none: keep every crop's features | mean: average them to (N, D)")
    device: str = option("auto", "auto (cuda if present, else cpu) | cpu | cuda | cuda:N")
    precision: Precision = option(
        Precision.fp32, "fp32 | bf16 | fp16 autocast (fp16 on CUDA only, bf16 also on CPUs with AVX512-BF16 or AMX)"
    )
    batch_size: int = option(1, "windows per forward pass (windows of consecutive videos share batches)")
    decode_workers: Union[int, str] = option(
        "auto", "decoding processes; a long video is cut into segments decoded at once | auto: 1 on a CPU, "
        "one per core but one (at most 16) on a GPU"
    )
    compile: bool = option(
        False, "torch.compile the network (inductor, weights frozen): faster after a compile of 10-20 s")
    cudnn_benchmark: bool = option(
        False, "on CUDA, let cuDNN time its convolution algorithms for each batch shape (off until measured on a GPU)"
    )
    on_extraction: OnExtraction = option(
        OnExtraction.print, "print | save_numpy | save_pickle: files per video | save_parquet: Parquet files of "
        "shard_videos videos each (one row per video)")
    shard_videos: int = option(
        1000, "with save_parquet: videos per Parquet file; a file is written for good (committed) when it "
        "holds this many, after shard_seconds, at the end of a run and when it is stopped")
    shard_seconds: float = option(
        600.0, "with save_parquet: commit the open Parquet file at least this often (what a kill -9 can lose)")
    output_path: str = option(
        "./output", "saved files go to {output_path}/{feature_type}/{model_name}/{name}_{key}.npy|.pkl")
    input_root: Optional[str] = option(
        None, "{name} is the video's path relative to this folder, without extension; null = the current folder "
        "(a video outside it: its absolute path without the leading /)"
    )
    tmp_path: Optional[str] = option(
        None, "where fps_method=reencode writes its re-encoded copies; null = {output_path}/.tmp"
    )
    keep_tmp_files: bool = option(False, "keep those copies")
    video_paths: Any = option(None, "a video, a folder (every video under it) or a URL, or a list [a.mp4,b.mp4]")
    file_with_video_paths: Optional[str] = option(
        None, "a UTF-8 text file: a video, folder or URL per line (blank lines and # comments left out)")
    keep_partial: bool = option(
        False, "keep the features of a truncated or damaged video (with a warning) instead of failing it"
    )
    show_pred: bool = option(False, "print the top-5 classes of every window")
    weights_path: Optional[str] = option(
        None, "a local checkpoint file (or hf://owner/repo for TimeSformer) instead of the official download"
    )
    pretrained: bool = option(True, "false = random weights, for testing only (the features are meaningless)")
    model_package: Optional[str] = option(
        None, "the Python package that registers the feature type; null = the one its config in "
        "configs/feature_type/ names"
    )
    remote_attempts: int = option(
        4, "tries of a request for a URL's bytes: errors that pass (5xx, a reset, a timeout) are retried with "
        "backoff, others (404, 403) are not")
    remote_timeout: float = option(30.0, "seconds without data before a request for a URL's bytes is given up")
    shard_id: int = option(0, "this process's part of the list: 0 .. num_shards - 1")
    num_shards: int = option(1, "split the list into this many disjoint parts (by path, whatever the input order)")
    claim_stale_seconds: float = option(
        600.0, "a video claimed by a process that has not refreshed its claim for this long is taken over"
    )
    status: bool = option(
        False, "with the run's command line: which videos are done (outputs that load, made with its feature type, "
        "model and settings), done otherwise, failed, not done; extract nothing"
    )
    progress_seconds: float = option(
        60.0, "seconds between progress lines when stderr is not a terminal (a log file, a pipe, Slurm's output)"
    )
    quiet: bool = option(False, "no progress bars or lines (errors, warnings and the summary still print)")

    @property
    def tmp_folder(self) -> str:
        """Where fps_method=reencode writes: tmp_path, or a folder under output_path (a run writes only there)."""
        return self.tmp_path or os.path.join(self.output_path, ".tmp")

    @property
    def remote_policy(self) -> Policy:
        """How hard a read of a URL tries (utils/video/remote_retry.py)."""
        return Policy(attempts=self.remote_attempts, read_timeout=self.remote_timeout,
                      connect_timeout=min(DEFAULT_POLICY.connect_timeout, self.remote_timeout))

    @property
    def saving(self) -> bool:
        return self.on_extraction != OnExtraction.print

    def as_record(self) -> dict:
        """The options as plain JSON values (enums as their names), as a run log records them."""
        return {key: value.value if isinstance(value, Enum) else value
                for key, value in dataclasses.asdict(self).items()}


OPTIONS = {f.name: f.metadata["help"] for f in dataclasses.fields(Options)}


def one_line(error: OmegaConfBaseException) -> str:
    """An OmegaConf error as one line naming the option."""
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return f"unknown option '{cause.full_key}' (see python main.py --help)"
    message = str(cause).splitlines()[0]
    return f"{cause.full_key}: {message}" if getattr(cause, "full_key", None) else message


def make_options(**values) -> Options:
    """``Options`` from keyword values, each checked as the command line checks it; SettingsError names
    the first bad one."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Options), values)
    except OmegaConfBaseException as error:
        raise SettingsError(one_line(error)) from None
    options = OmegaConf.to_object(typed)
    check_options(options)
    return options


def _positive(options: Options, key: str, kind: type = int, also: tuple = (None,)) -> None:
    value = getattr(options, key)
    if value not in also and not (isinstance(value, kind) and not isinstance(value, bool) and value > 0):
        others = "".join(f" or {'null' if other is None else other}" for other in also)
        noun = "integer" if kind is int else "number"
        raise SettingsError(f"{key} must be a positive {noun}{others}, got {value!r}")


def check_options(options: Options) -> None:
    """What the option types cannot say; raises SettingsError."""
    _positive(options, "stack_size")
    _positive(options, "step_size")
    _positive(options, "extraction_fps", kind=float)
    _positive(options, "batch_size", also=())
    _positive(options, "decode_workers", also=("auto",))
    _positive(options, "num_shards", also=())
    _positive(options, "claim_stale_seconds", kind=float, also=())
    _positive(options, "progress_seconds", kind=float, also=())
    _positive(options, "shard_videos", also=())
    _positive(options, "remote_attempts", also=())
    _positive(options, "remote_timeout", kind=float, also=())
    _positive(options, "shard_seconds", kind=float, also=())
    if not 0 <= options.shard_id < options.num_shards:
        raise SettingsError(f"shard_id must be in 0 .. num_shards - 1 = {options.num_shards - 1}, "
                            f"got {options.shard_id}")
    if options.crops not in CROP_COUNTS:
        raise SettingsError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {options.crops!r}")
    if options.weights_path is not None and not options.pretrained:
        raise SettingsError("weights_path and pretrained=false contradict each other; give one of them")
    reencodes = options.fps_method == FpsMethod.reencode and options.extraction_fps is not None
    if reencodes and shutil.which("ffmpeg") is None:
        raise SettingsError("fps_method=reencode needs the ffmpeg program on PATH")
