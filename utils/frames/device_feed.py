"""Frames from the decoding processes' slots to the network's device, and features back, without
the main thread waiting for the device.

On a CUDA device each process's slots are pinned (page-locked) once, so a slot is one asynchronous
host-to-device copy on a stream of its own, of just its gathered taps and weights. The
preprocessing of its frames (utils/frames/transforms.py, a fixed number of kernels per slot) waits for the
copy through an event on the network's stream, and the slot goes back to its process once the copy
is done. Features (and logits, when something uses them) come back into pinned memory, recorded by
an event, and are read when a video needs them, so the next batch is queued meanwhile. Waiting for
an event blocks the thread instead of spinning, so the main thread's CPU time is its own work. On a
CPU the same code runs without copies: the preprocessing reads the shared slot itself.

A failure of the device surfaces where the host next waits for it (an event, a copy read back), so
every such wait turns it into a DeviceError.
"""
import collections
import mmap
import warnings
from typing import Optional

import numpy as np
import torch

from video_features.utils.errors import VideoFeaturesWarning
from video_features.utils.frames.slots import SLOTS, SlotLayout
from video_features.utils.frames.transforms import interpolate_normalize
from video_features.utils.network.device import device_errors

CUDA_HOST_REGISTER_PORTABLE = 1  # cudaHostRegisterPortable: pinned for copies to any device


class HostRegistration:
    """The CUDA runtime's page-locking of memory that is already allocated (the shared slots)."""

    def __init__(self, device: torch.device):
        self.device, self.cudart = device, torch.cuda.cudart()

    def register(self, pointer: int, size: int) -> int:
        """CUDA's error code (0: pinned)."""
        with torch.cuda.device(self.device):
            return int(self.cudart.cudaHostRegister(pointer, size, CUDA_HOST_REGISTER_PORTABLE))

    def unregister(self, pointer: int) -> None:
        with torch.cuda.device(self.device):
            self.cudart.cudaHostUnregister(pointer)

    def clear_error(self) -> None:
        """Takes the error a refused registration leaves pending, which the next kernel launch would
        otherwise report as its own: PyTorch's check after a launch reads it, and reading clears it."""
        try:
            torch.ones(1, device=self.device)
        except RuntimeError:
            pass


def pin(hosts: list[torch.Tensor], registration) -> list[int]:
    """Page-locks the shared buffers; returns the pointers pinned. Where the system refuses (a
    locked-memory limit, a sandbox), that buffer and the rest are copied synchronously, with a warning."""
    pinned = []
    for host in hosts:
        code = registration.register(host.data_ptr(), host.numel())
        if code != 0:
            registration.clear_error()
            warnings.warn(f"could not pin the decoding processes' shared memory (CUDA error {code}): copies of "
                          f"{len(hosts) - len(pinned)} of {len(hosts)} processes' frames to the GPU will be "
                          "synchronous", VideoFeaturesWarning)
            break
        pinned.append(host.data_ptr())
    return pinned


class Pending:
    """Arrays on their way from the device: ``arrays()`` waits for them."""

    def __init__(self, device: torch.device, tensors: list[Optional[torch.Tensor]],
                 event: Optional[torch.cuda.Event] = None):
        self.device, self.tensors, self.event = device, tensors, event

    def ready(self) -> bool:
        with device_errors(self.device):
            return self.event is None or self.event.query()

    def arrays(self) -> list[Optional[np.ndarray]]:
        if self.event is not None:
            with device_errors(self.device):
                self.event.synchronize()
        return [None if tensor is None else tensor.numpy() for tensor in self.tensors]


class DeviceFeed:
    def __init__(self, device: torch.device, layout: SlotLayout, buffers: list[mmap.mmap], mean: tuple, std: tuple,
                 bgr: bool, dtype: torch.dtype = torch.float32):
        """``dtype``: the network's input dtype, which the preprocessed frames are kept in."""
        self.device, self.layout, self.dtype = device, layout, dtype
        self.normalization = (mean, std, bgr)
        self.host = [torch.from_numpy(np.frombuffer(buffer, dtype=np.uint8)) for buffer in buffers]
        self.cuda = device.type == "cuda"
        self.copied: collections.deque = collections.deque()  # (worker, slot, event) whose copies are queued
        self.pinned: list[int] = []
        if self.cuda:
            with device_errors(device):
                self.registration = HostRegistration(device)
                self.pinned = pin(self.host, self.registration)
                self.copy_stream = torch.cuda.Stream(device)
                self.staging = [torch.empty(len(host), dtype=torch.uint8, device=device) for host in self.host]
                # a slot's device copy is overwritten only once the preprocessing that read it has run
                self.consumed = [[torch.cuda.Event() for _ in range(SLOTS)] for _ in self.host]

    def _slot(self, storage: torch.Tensor, slot: int, images: int) -> tuple[torch.Tensor, ...]:
        """The slot's row weights, column weights and pixels, as views of ``storage``."""
        layout = self.layout
        start = slot * layout.bytes
        crop = layout.preprocessing.crop
        weights = storage[start : start + 4 * layout.weights].view(torch.float32).view(2, layout.crops, crop)
        first_pixel = start + layout.pixels_offset
        pixels = storage[first_pixel : first_pixel + images * layout.frame_bytes].view(images, *layout.frame_shape)
        return weights[0], weights[1], pixels

    def preprocess_slot(self, worker: int, slot: int, images: int) -> torch.Tensor:
        """The preprocessed frames of a slot: (images, 3, h, w), or (images, crops, 3, h, w) with crops,
        on the device. On a CPU the slot can be given back at once; on CUDA see ``releasable``."""
        storage = self.host[worker]
        if self.cuda:
            used = slice(slot * self.layout.bytes, slot * self.layout.bytes + self.layout.pixels_offset
                         + images * self.layout.frame_bytes)
            with torch.cuda.stream(self.copy_stream):
                self.copy_stream.wait_event(self.consumed[worker][slot])
                self.staging[worker][used].copy_(storage[used], non_blocking=True)
                copied = torch.cuda.Event(blocking=True)
                copied.record(self.copy_stream)
            torch.cuda.current_stream(self.device).wait_event(copied)
            self.copied.append((worker, slot, copied))
            storage = self.staging[worker]
        row_weights, column_weights, pixels = self._slot(storage, slot, images)
        frames = interpolate_normalize(pixels, row_weights, column_weights, *self.normalization).to(self.dtype)
        if self.cuda:
            self.consumed[worker][slot].record(torch.cuda.current_stream(self.device))
        return frames[:, 0] if self.layout.crops == 1 else frames

    def releasable(self, wait: bool = False) -> list[tuple[int, int]]:
        """The (worker, slot) whose copies to the device are done (with ``wait``: all of them, waiting)."""
        done = []
        with device_errors(self.device):
            while self.copied and (wait or self.copied[0][2].query()):
                worker, slot, event = self.copied.popleft()
                event.synchronize()
                done.append((worker, slot))
        return done

    def forget(self, worker: int) -> None:
        """Drops a dead process's slots from those to give back: its replacement starts with all free."""
        with device_errors(self.device):
            for _, _, event in self.copied:
                event.synchronize()  # the copies out of its buffer are over before the new process writes there
        self.copied = collections.deque(item for item in self.copied if item[0] != worker)

    def to_host(self, *tensors: Optional[torch.Tensor]) -> Pending:
        """float32 copies of ``tensors`` (None stays None) in host memory, on their way."""
        if not self.cuda:
            return Pending(self.device, [None if t is None else t.float() for t in tensors])
        host = [None if t is None else torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for t in tensors]
        for target, tensor in zip(host, tensors):
            if tensor is not None:
                target.copy_(tensor.float(), non_blocking=True)
        event = torch.cuda.Event(blocking=True)
        event.record(torch.cuda.current_stream(self.device))
        return Pending(self.device, host, event)

    def close(self) -> None:
        """Waits for the device's work on the slots, then unpins them (before they are unmapped)."""
        if self.cuda:
            try:
                with device_errors(self.device):
                    torch.cuda.synchronize(self.device)
            finally:
                for pointer in self.pinned:
                    self.registration.unregister(pointer)
                self.pinned, self.staging = [], []
        self.host = []  # the views of the shared buffers, which are unmapped next
