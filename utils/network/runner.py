"""A network as the pipeline runs it: on its device, in inference mode, under autocast, optionally
compiled; a failure of the device as a DeviceError."""
import contextlib
from typing import Optional

import torch

from utils.network.device import device_errors
from utils.network.precision import AUTOCAST_DTYPES


class Inference:
    """A network as the pipeline runs it: on its device, in inference mode, under autocast for
    bf16/fp16, in channels_last_3d where that is faster, optionally compiled."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        self.device = device
        self.autocast_dtype: Optional[torch.dtype] = AUTOCAST_DTYPES[precision]
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
        """``work()``, with a failure of the device as a DeviceError (the run cannot go on)."""
        with device_errors(self.device, batch_size):
            return work()

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
