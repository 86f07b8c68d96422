"""The options: one typed declaration (a dataclass in Hydra's ConfigStore), their checks and --help.

``configs/config.yaml`` composes this schema with the ``feature_type`` group; OmegaConf checks
every value's type when it is set. What types cannot say (positive numbers, options that exclude
each other) ``check_config`` says, in one line that names the option.
"""
import dataclasses
import os
import re
import shutil
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Optional, Union

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from utils.errors import SettingsError
from utils.frames.crops import CROP_COUNTS

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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


def option(default: Any, meaning: str):
    return field(default=default, metadata={"help": meaning})


@dataclass
class ExtractionConfig:
    feature_type: str = option("r21d", "the network family: a config of configs/feature_type/ (see Models below)")
    model_name: Optional[str] = option(None, "the network (see Models below); null = the feature type's first model")
    stack_size: Optional[int] = option(None, "frames per window; null = the model's default")
    step_size: Optional[int] = option(None, "frames from one window's start to the next; null = the model's default")
    extraction_fps: Optional[float] = option(None, "resample the video to this rate before cutting windows; null = its own rate")
    fps_method: FpsMethod = option(
        FpsMethod.filter, "filter: FFmpeg's fps filter inside this process | reencode: ffmpeg CLI re-encode into tmp_path"
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
    compile: bool = option(False, "torch.compile the network (inductor, weights frozen): faster after a compile of 10-20 s")
    cudnn_benchmark: bool = option(
        False, "on CUDA, let cuDNN time its convolution algorithms for each batch shape (off until measured on a GPU)"
    )
    on_extraction: OnExtraction = option(OnExtraction.print, "print | save_numpy | save_pickle")
    output_path: str = option("./output", "saved files go to {output_path}/{feature_type}/{model_name}/{name}_{key}.npy|.pkl")
    input_root: Optional[str] = option(
        None, "{name} is the video's path relative to this folder, without extension; null = the current folder "
        "(a video outside it: its absolute path without the leading /)"
    )
    tmp_path: Optional[str] = option(
        None, "where fps_method=reencode writes its re-encoded copies; null = {output_path}/.tmp"
    )
    keep_tmp_files: bool = option(False, "keep those copies")
    video_paths: Any = option(None, "a video path or a list [a.mp4,b.mp4]")
    file_with_video_paths: Optional[str] = option(None, "a text file with one video path per line")
    keep_partial: bool = option(
        False, "keep the features of a truncated or damaged video (with a warning) instead of failing it"
    )
    show_pred: bool = option(False, "print the top-5 classes of every window")
    weights_path: Optional[str] = option(
        None, "a local checkpoint file (or hf://owner/repo for TimeSformer) instead of the official download"
    )
    pretrained: bool = option(True, "false = random weights, for testing only (the features are meaningless)")
    model_package: str = option("models.r21d", "the Python package that registers the feature type (set by its config)")
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


ConfigStore.instance().store(name="extraction_schema", node=ExtractionConfig)
OPTIONS = {f.name: f.metadata["help"] for f in dataclasses.fields(ExtractionConfig)}


def one_line(error: Exception) -> str:
    """Hydra's and OmegaConf's errors as one line naming the option."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, choice = error.missing_cfg_file.rpartition("/")  # an unknown choice of a config group
        return f"unknown {group} '{choice}'; choose one of: {', '.join(error.options)}"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return f"unknown option '{cause.full_key}' (see python main.py --help)"
    if isinstance(cause, OmegaConfBaseException):
        message = str(cause).splitlines()[0]
        return f"{cause.full_key}: {message}" if cause.full_key else message
    return str(error).strip().splitlines()[0]


def load_config(overrides: Union[Iterable[str], dict] = ()) -> DictConfig:
    """The configuration for Hydra overrides ("key=value" strings, or a dict of them), checked."""
    if isinstance(overrides, dict):
        overrides = [f"{key}={_hydra_value(value)}" for key, value in overrides.items()]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise SettingsError(one_line(error)) from None
    check_config(cfg)
    return cfg


def _hydra_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _positive(cfg: DictConfig, key: str, kind: type = int, also: tuple = (None,)) -> None:
    value = cfg[key]
    if value not in also and not (isinstance(value, kind) and not isinstance(value, bool) and value > 0):
        others = "".join(f" or {'null' if other is None else other}" for other in also)
        noun = "integer" if kind is int else "number"
        raise SettingsError(f"{key} must be a positive {noun}{others}, got {value!r}")


def check_config(cfg: DictConfig) -> None:
    """What the option types cannot say; raises SettingsError."""
    _positive(cfg, "stack_size")
    _positive(cfg, "step_size")
    _positive(cfg, "extraction_fps", kind=float)
    _positive(cfg, "batch_size", also=())
    _positive(cfg, "decode_workers", also=("auto",))
    _positive(cfg, "num_shards", also=())
    _positive(cfg, "claim_stale_seconds", kind=float, also=())
    _positive(cfg, "progress_seconds", kind=float, also=())
    if not 0 <= cfg.shard_id < cfg.num_shards:
        raise SettingsError(f"shard_id must be in 0 .. num_shards - 1 = {cfg.num_shards - 1}, got {cfg.shard_id}")
    if cfg.crops not in CROP_COUNTS:
        raise SettingsError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {cfg.crops!r}")
    if cfg.weights_path is not None and not cfg.pretrained:
        raise SettingsError("weights_path and pretrained=false contradict each other; give one of them")
    if cfg.fps_method == FpsMethod.reencode and cfg.extraction_fps is not None and shutil.which("ffmpeg") is None:
        raise SettingsError("fps_method=reencode needs the ffmpeg program on PATH")


URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # an input given as a URL (not supported: utils/run.py)

# What a folder given as an input contributes: its files with these extensions (any case)
VIDEO_EXTENSIONS = (".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".mxf",
                    ".ogv", ".ts", ".vob", ".webm", ".wmv")


def video_paths(cfg: DictConfig) -> list[str]:
    """The input videos: video_paths then the lines of file_with_video_paths, each folder among them
    replaced by the videos under it; a file given twice, however spelled (``a.mp4``, ``./a.mp4``, a
    link to it), is kept once, as first spelled."""
    paths: list[str] = []
    given = cfg.video_paths
    if isinstance(given, (list, ListConfig)):
        paths.extend(str(p) for p in given)
    elif given is not None:
        paths.append(str(given))
    if cfg.file_with_video_paths is not None:
        paths.extend(_listed_paths(str(cfg.file_with_video_paths)))
    if not paths:
        raise SettingsError("no videos given: set video_paths=... or file_with_video_paths=...")
    unique: dict[str, str] = {}
    for path in paths:
        for video in videos_in(path) if os.path.isdir(path) else [path]:
            unique.setdefault(os.path.realpath(video), video)
    if not unique:
        raise SettingsError(f"no videos in {', '.join(paths)} (videos are files ending in {', '.join(VIDEO_EXTENSIONS)})")
    return list(unique.values())


def videos_in(folder: str) -> list[str]:
    """The video files under ``folder`` and its subfolders: a folder's own files, then its
    subfolders', each sorted by name; hidden files and folders (an output's .runs, say) are left
    out, and linked folders are not followed."""
    videos = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        videos += [os.path.join(parent, name) for name in sorted(files)
                   if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)]
    return videos


def _listed_paths(list_file: str) -> list[str]:
    """The lines of a list file, blank lines and # comments left out. UTF-8, with or without the
    byte-order mark some Windows editors write, and with LF or CRLF line ends."""
    try:
        with open(list_file, "rb") as file:
            data = file.read()
    except OSError as error:
        raise SettingsError(f"file_with_video_paths={list_file}: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SettingsError(f"file_with_video_paths={list_file}: not UTF-8 text (line {line} has the byte "
                          f"0x{data[error.start]:02x}); save it as UTF-8") from None
    lines = (line.strip() for line in text.split("\n"))
    return [line for line in lines if line and not line.startswith("#")]


def check_files(cfg: DictConfig) -> None:
    """That the files the options name are there; run before a sweep's jobs start, and before the
    model loads. A video or folder that video_paths names and that is not there is a mistyped
    option; a video of a list file that has gone fails alone, and the others are extracted. The list
    is not read here: it may be a pipe (``file_with_video_paths=<(ls *.mp4)``) that reads once."""
    list_file = cfg.file_with_video_paths
    if list_file is not None and not os.path.exists(list_file):
        raise SettingsError(f"file_with_video_paths={list_file}: No such file or directory")
    given = cfg.video_paths
    for path in given if isinstance(given, (list, ListConfig)) else [] if given is None else [given]:
        if not os.path.lexists(str(path)) and not URL.match(str(path)):
            raise SettingsError(f"video_paths: {path}: no such file or folder")


def help_text(cfg: DictConfig) -> str:
    """--help: every option with its meaning and its value in ``cfg``, then the models."""
    from models.registry import families

    lines = [
        "Extracts per-window video features with R(2+1)D, SlowFast or TimeSformer.",
        "",
        "usage: python main.py [option=value ...]        (Hydra's override syntax)",
        "       python main.py -m option=a,b ...          (a sweep: one job per value)",
        "  e.g. python main.py feature_type=r21d video_paths=[./sample/a.mp4] on_extraction=save_numpy",
        "  quote values with spaces, commas or '=': 'video_paths=[\"my clip.mp4\"]', or use file_with_video_paths",
        "",
        "Options (value now in brackets):",
    ]
    width = max(map(len, OPTIONS))
    for key, meaning in OPTIONS.items():
        value = OmegaConf.to_yaml({key: cfg[key]}).split(":", 1)[1].strip()
        lines.append(f"  {key:<{width}}  {meaning} [{value}]")
    lines += ["", "Models (the first is the default):"]
    for feature_type, family in families().items():
        lines.append(f"  {feature_type}: {', '.join(c.name for c in family.checkpoints)}")
    lines += ["", "Hydra's own flags: python main.py --hydra-help; the resolved config: python main.py --cfg job"]
    return "\n".join(lines)


OmegaConf.register_new_resolver("extractor_help", lambda *, _root_: help_text(_root_), replace=True)
