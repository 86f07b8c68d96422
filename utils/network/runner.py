"""A network as the pipeline runs it: on its device, in inference mode, under autocast, optionally
compiled; a failure of the device as a DeviceError."""
import contextlib
from typing import Optional

import torch

from video_features.utils.network.device import device_errors
from video_features.utils.network.precision import AUTOCAST_DTYPES, cast_autocast_weights


def set_torch_globals(device: torch.device, precision: str, compile: bool, cudnn_benchmark: bool) -> None:
    """The process-wide settings of torch a run depends on, set once at its start (Extractor)."""
    if device.type == "cuda":
        if AUTOCAST_DTYPES[precision] is None:
            # cuDNN runs fp32 convolutions in TF32 by default: features 1e-3 off the reference
            # (measured on an H200 against video_features). fp32 means fp32; bf16 is the fast option.
            torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = cudnn_benchmark
    if compile:
        from torch._inductor import config as inductor_config

        # freezing folds the weights into the graph as constants: the big win for inference
        inductor_config.freezing = True


class Inference:
    """A network as the pipeline runs it: on its device, in inference mode, under autocast for
    bf16/fp16, in channels_last_3d where that is faster, optionally compiled."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        self.device = device
        self.autocast_dtype: Optional[torch.dtype] = AUTOCAST_DTYPES[precision]
        # the first layer casts its input to the autocast dtype: the batch is built in it at once
        self.input_dtype = self.autocast_dtype or torch.float32
        self.channels_last = channels_last
        self.compiled = compile
        self.network = network.eval().to(device)
        if self.autocast_dtype is not None:
            cast_autocast_weights(self.network, self.autocast_dtype)
        if channels_last:
            self.network.to(memory_format=torch.channels_last_3d)
        self._forward = self.network
        if compile:  # with inductor's freezing on (set_torch_globals)
            self._forward = torch.compile(self.network, dynamic=False)

    def run(self, work, batch_size: int):
        """``work()``, with a failure of the device as a DeviceError (the run cannot go on)."""
        with device_errors(self.device, batch_size):
            return work()

    def batch(self, frames: list[torch.Tensor], windows: int, rows: int) -> torch.Tensor:
        """The network's input for ``windows`` windows whose frames, each ([crops,] C, h, w), are listed
        window by window: (rows, C, T, h, w), or (rows, crops, C, T, h, w), in the network's dtype and
        memory layout, written once. Rows past ``windows`` repeat the last window (a compiled forward
        is specialised to one batch size: padding costs less than compiling again)."""
        stacked = torch.stack(frames).unflatten(0, (windows, -1))  # (B, T, [crops,] C, h, w)
        clips = stacked.movedim(1, -3)  # time after the channels
        flat = (rows * (clips.shape[1] if clips.dim() == 6 else 1), *clips.shape[-4:])
        layout = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        batch = torch.empty(flat, dtype=self.input_dtype, device=clips.device, memory_format=layout)
        batch = batch.view(rows, *clips.shape[1:])  # a view: the rows are outermost in either layout
        batch[:windows].copy_(clips)
        if rows > windows:
            batch[windows:].copy_(batch[windows - 1 : windows].expand(rows - windows, *clips.shape[1:]))
        return batch

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
