"""Where and how the network runs: device, precision, memory format, compilation."""
import contextlib
import os
from typing import Optional

import torch

from utils.config import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(Exception):
    """The device failed (out of memory, a CUDA error): the run stops. The message is one line."""


def usable_cores() -> int:
    """The cores this process may run on (a cluster job's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_job_index() -> Optional[int]:
    """This process's index among the jobs of one machine: LOCAL_RANK (torchrun), SLURM_LOCALID (a
    Slurm task), or the job number of a Hydra sweep (joblib or submitit_local launch all on one node)."""
    for variable in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return HydraConfig.get().job.num
    return None


def resolve_device(name: str) -> torch.device:
    """'auto' -> a CUDA device if present (with several visible, the job's own: its local index
    modulo their number, so that N jobs on an N-GPU machine get one each), else cpu; fails on
    devices this machine does not have. CUDA_VISIBLE_DEVICES limits and renumbers the choice."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        index = local_job_index()
        count = torch.cuda.device_count()
        return torch.device("cuda", index % count) if index is not None and count > 1 else torch.device("cuda")
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


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively. Without the units oneDNN emulates it: 84x slower than
    fp32 on an AVX2-only EPYC, where with AVX512-BF16 it is 2x faster (README, Precision)."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def check_precision(precision: str, device: torch.device) -> None:
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("precision=fp16 needs a CUDA device (a CPU emulates it: 128x slower); on a CPU use bf16 or fp32")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16_units():
        raise ConfigError(
            "precision=bf16: this CPU has no AVX512-BF16 or AMX units, without which bf16 runs dozens of times "
            "slower than fp32; use precision=fp32 or a CUDA device"
        )


def resolve_decode_workers(value, device: torch.device) -> int:
    """'auto' -> 1 on a CPU, where the network needs every core; on a GPU one per core but one (the
    main process's, which feeds the GPU), at most 16: one process cannot keep a GPU busy."""
    if value != "auto":
        return value
    return 1 if device.type == "cpu" else max(1, min(16, usable_cores() - 1))


class Inference:
    """A network as the pipeline runs it: on its device, in inference mode, under autocast for
    bf16/fp16, in channels_last_3d where that is faster, optionally compiled."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        self.device = device
        self.autocast_dtype: Optional[torch.dtype] = PRECISIONS[precision]
        self.channels_last = channels_last
        self.compiled = compile
        if device.type == "cuda" and self.autocast_dtype is None:
            # cuDNN runs fp32 convolutions in TF32 by default: features 1e-3 off the reference
            # (measured on an H200 against video_features). fp32 means fp32; bf16 is the fast option.
            torch.backends.cudnn.allow_tf32 = False
        self.network = network.eval().to(device)
        if channels_last:
            self.network.to(memory_format=torch.channels_last_3d)
        self._forward = self.network
        if compile:
            from torch._inductor import config as inductor_config

            # freezing folds the weights into the graph as constants: the big win for inference
            inductor_config.freezing = True
            self._forward = torch.compile(self.network, dynamic=False)

    def run(self, work, batch_size: int):
        """``work()``, with a failure of a CUDA device as a DeviceError (the run cannot go on)."""
        try:
            return work()
        except torch.cuda.OutOfMemoryError:
            raise DeviceError(f"{self.device} ran out of memory: lower batch_size (now {batch_size})") from None
        except RuntimeError as error:
            if self.device.type != "cuda":
                raise
            raise DeviceError(f"{self.device} failed: {str(error).strip().splitlines()[0]}") from None

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, h, w) preprocessed windows -> (features (B, D), logits (B, classes))."""
        if self.channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self._forward(clips)
