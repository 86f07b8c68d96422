"""Which device a network runs on: the one asked for, checked against this machine, or with
device=auto a GPU of its own for each job of a machine."""
import os
from typing import Optional

import torch

from utils.errors import SettingsError


def local_job_index(sweep_job: Optional[int] = None) -> Optional[int]:
    """This process's index among the jobs of one machine: LOCAL_RANK (torchrun), SLURM_LOCALID (a
    Slurm task), or ``sweep_job``, the job number of a sweep the caller runs in (a Hydra sweep's
    joblib or submitit_local jobs all run on one node)."""
    for variable in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return sweep_job


def resolve_device(name: str, sweep_job: Optional[int] = None) -> torch.device:
    """'auto' -> a CUDA device if present (with several visible, the job's own: its local index
    modulo their number, so that N jobs on an N-GPU machine get one each), else cpu; fails on
    devices this machine does not have. CUDA_VISIBLE_DEVICES limits and renumbers the choice."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        index = local_job_index(sweep_job)
        count = torch.cuda.device_count()
        return torch.device("cuda", index % count) if index is not None and count > 1 else torch.device("cuda")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise SettingsError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"device={name}: CUDA is not available on this machine (use device=cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise SettingsError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return device
