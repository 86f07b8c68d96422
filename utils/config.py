"""Loading and checking the configuration.

Options are composed by Hydra from ``configs/`` (the primary config plus the ``feature_type``
group), with Hydra's override syntax on the command line. Composition goes through Hydra's
compose API rather than ``@hydra.main`` so that a run writes no ``outputs/`` folder, does not
change directory, and a bad option ends with one clear line instead of a stack trace.
"""
import os
import re
from typing import Iterable, Union

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from utils.output import ON_EXTRACTION

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# Every option with its meaning; --help and the README's table come from here.
OPTIONS = {
    "feature_type": "r21d | slowfast | timesformer",
    "model_name": "the network (see 'Models' below); default: the feature type's first model",
    "stack_size": "frames per window; null = the model's default",
    "step_size": "frames from one window's start to the next; null = the model's default",
    "extraction_fps": "resample the video to this rate before cutting windows; null = its own rate",
    "fps_method": "filter: FFmpeg's fps filter inside this process | reencode: ffmpeg CLI re-encode into tmp_path",
    "device": "auto (cuda if present, else cpu) | cpu | cuda | cuda:N",
    "precision": "fp32 | bf16 | fp16 autocast (fp16 on CUDA only, bf16 also on CPUs with AVX512-BF16 or AMX)",
    "batch_size": "windows per forward pass (windows of consecutive videos share batches)",
    "decode_workers": "videos decoded at once, each in its own thread | auto: 1 on a CPU, half the cores (at most 8) on a GPU",
    "compile": "torch.compile the network (inductor, weights frozen): faster after a compile of 10-20 s",
    "on_extraction": "print | save_numpy | save_pickle",
    "output_path": "saved files go to {output_path}/{feature_type}/{model_name}/{name}_{key}.npy|.pkl",
    "tmp_path": "where fps_method=reencode writes its re-encoded copies",
    "keep_tmp_files": "keep those copies",
    "video_paths": "a video path or a list [a.mp4,b.mp4]",
    "file_with_video_paths": "a text file with one video path per line",
    "show_pred": "print the top-5 classes of every window",
    "weights_path": "a local checkpoint file (or hf://owner/repo for TimeSformer) instead of the official download",
    "pretrained": "false = random weights, for testing only (the features are meaningless)",
}


class ConfigError(ValueError):
    """A bad option. The message is one line and names the option."""


def _describe_hydra_error(error: Exception) -> str:
    text = str(error)
    match = re.search(r"Could not override '([^']+)'", text)
    if match and "not in struct" in str(error.__cause__ or ""):
        return f"unknown option '{match.group(1)}' (see python main.py --help)"
    match = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if match:
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        return f"unknown {match.group(1)} '{match.group(2)}'; choose one of: {', '.join(options)}"
    return text.strip().splitlines()[0]


def load_config(overrides: Union[Iterable[str], dict] = ()) -> DictConfig:
    """Composes the configuration from Hydra overrides ("key=value" strings, or a dict of them)."""
    if isinstance(overrides, dict):
        overrides = [f"{key}={_hydra_value(value)}" for key, value in overrides.items()]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose("config", overrides=list(overrides))
    except HydraException as error:
        raise ConfigError(_describe_hydra_error(error)) from None
    check_config(cfg)
    return cfg


def _hydra_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _positive_int(cfg, key: str, also: tuple = ()) -> None:
    """A positive integer, or one of the values in ``also`` (e.g. None, "auto")."""
    value = cfg[key]
    if value in also:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        others = "".join(f" or {'null' if other is None else other}" for other in also)
        raise ConfigError(f"{key} must be a positive integer{others}, got {value!r}")


def _bool(cfg, key: str) -> None:
    if not isinstance(cfg[key], bool):
        raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")


def _choice(cfg, key: str, choices: Iterable[str]) -> None:
    if cfg[key] not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {cfg[key]!r}")


def check_config(cfg: DictConfig) -> None:
    """Checks every option that does not depend on the model; raises ConfigError."""
    _positive_int(cfg, "stack_size", also=(None,))
    _positive_int(cfg, "step_size", also=(None,))
    _positive_int(cfg, "batch_size")
    _positive_int(cfg, "decode_workers", also=("auto",))
    fps = cfg.extraction_fps
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise ConfigError(f"extraction_fps must be a positive number or null, got {fps!r}")
    _choice(cfg, "fps_method", ("filter", "reencode"))
    _choice(cfg, "on_extraction", ON_EXTRACTION)
    _choice(cfg, "precision", ("fp32", "bf16", "fp16"))
    for key in ("keep_tmp_files", "show_pred", "pretrained", "compile"):
        _bool(cfg, key)
    if cfg.weights_path is not None and not cfg.pretrained:
        raise ConfigError("weights_path and pretrained=false contradict each other; give one of them")
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.precision == "fp16":
        raise ConfigError("precision=fp16 needs a CUDA device (a CPU emulates it: 128x slower); on a CPU use bf16 or fp32")
    if device.type == "cpu" and cfg.precision == "bf16" and not cpu_has_bf16_units():
        raise ConfigError(
            "precision=bf16: this CPU has no AVX512-BF16 or AMX units, without which bf16 runs dozens of times "
            "slower than fp32; use precision=fp32 or a CUDA device"
        )
    if cfg.fps_method == "reencode" and cfg.extraction_fps is not None:
        from utils.video import ffmpeg_available

        if not ffmpeg_available():
            raise ConfigError("fps_method=reencode needs the ffmpeg program on PATH")


def usable_cores() -> int:
    """The cores this process may run on (a cluster job's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_decode_workers(value, device: torch.device) -> int:
    """'auto' -> 1 on a CPU, where the network needs every core; on a GPU half the cores (at most 8):
    one decoder cannot keep a GPU busy, and the other half goes to FFmpeg's threads in each."""
    if value != "auto":
        return value
    return 1 if device.type == "cpu" else max(1, min(8, usable_cores() // 2))


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively. Without the units oneDNN emulates it: 84x slower than
    fp32 on an AVX2-only EPYC, where with AVX512-BF16 it is 2x faster (README, Precision)."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def resolve_device(name) -> torch.device:
    """'auto' -> cuda if present, else cpu; fails on devices this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: CUDA is not available on this machine (use device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return device


def video_paths(cfg: DictConfig) -> list[str]:
    """The input videos: video_paths then the lines of file_with_video_paths, duplicates dropped."""
    paths: list[str] = []
    given = cfg.video_paths
    if isinstance(given, (list, ListConfig)):
        paths.extend(str(p) for p in given)
    elif given is not None:
        paths.append(str(given))
    if cfg.file_with_video_paths is not None:
        list_file = str(cfg.file_with_video_paths)
        try:
            with open(list_file, encoding="utf-8") as file:
                lines = [line.strip() for line in file]
        except OSError as error:
            raise ConfigError(f"file_with_video_paths={list_file}: {error.strerror}") from None
        paths.extend(line for line in lines if line and not line.startswith("#"))
    if not paths:
        raise ConfigError("no videos given: set video_paths=... or file_with_video_paths=...")
    return list(dict.fromkeys(paths))


def help_text(models: dict[str, list[str]]) -> str:
    defaults = load_config([])
    lines = [
        "Extracts per-window video features with R(2+1)D, SlowFast or TimeSformer.",
        "",
        "usage: python main.py [option=value ...]   (Hydra override syntax)",
        "  e.g. python main.py feature_type=r21d video_paths=[./sample/a.mp4] on_extraction=save_numpy",
        "",
        "Options (default in brackets):",
    ]
    width = max(map(len, OPTIONS))
    for key, meaning in OPTIONS.items():
        default = OmegaConf.to_yaml({key: defaults[key]}).split(":", 1)[1].strip()
        lines.append(f"  {key:<{width}}  {meaning} [{default}]")
    lines += ["", "Models (the first is the default):"]
    for feature_type, names in models.items():
        lines.append(f"  {feature_type}: {', '.join(names)}")
    return "\n".join(lines)
