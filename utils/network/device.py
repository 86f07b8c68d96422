"""Which device a network runs on: the one asked for, checked against this machine, or with
device=auto a GPU of its own for each job of a machine; device failures as one error."""
import contextlib
from typing import Optional

import torch

from video_features.utils.errors import DeviceError, SettingsError
from video_features.utils.machine import MachineShare


def resolve_device(name: str, share: MachineShare = MachineShare()) -> torch.device:
    """'auto' -> a CUDA device if present (with several visible, the job's own: its index among the
    jobs of this machine (utils/machine.py) modulo their number, so that N jobs on an N-GPU machine
    get one each), else cpu; fails on devices this machine does not have. CUDA_VISIBLE_DEVICES
    limits and renumbers the choice."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        return torch.device("cuda", share.job % count) if share.job is not None and count > 1 else torch.device("cuda")
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


@contextlib.contextmanager
def device_errors(device: torch.device, batch_size: Optional[int] = None):
    """A failure of the device inside the block as a DeviceError (the run cannot go on): out of
    memory, or a CUDA error, which surfaces at the next synchronisation point (an event waited on, a
    copy read back), not where it happened."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        hint = f": lower batch_size (now {batch_size})" if batch_size else ""
        raise DeviceError(f"{device} ran out of memory{hint}") from None
    except RuntimeError as error:  # torch.AcceleratorError, or a RuntimeError torch raises for CUDA
        if device.type != "cuda" and not isinstance(error, torch.AcceleratorError):
            raise
        raise DeviceError(f"{device} failed: {str(error).strip().splitlines()[0]}") from None
