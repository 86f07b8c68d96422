"""Cutting a stream of frames into windows of ``stack_size`` frames every ``step_size`` frames.

As in video_features, window k covers frames [k * step, k * step + stack) and an incomplete tail
is dropped. A video shorter than one window yields one window padded with its last frame. The
network sees only ``offsets`` of each window (all of them for R(2+1)D, a uniform subsample for
SlowFast and TimeSformer), so only those frames are converted and preprocessed, and where
some frames are in no window (``leaves_frames_out``) decoding may skip them.
"""
import functools
from dataclasses import dataclass
from typing import Any, Optional


def linspace_offsets(stack: int, frames: int) -> list[int]:
    """``frames`` indices spread evenly over [0, stack - 1], truncated (pytorchvideo's
    UniformTemporalSubsample, TimeSformer's Kinetics test sampling)."""
    import torch  # here: the decoding processes use this module's plans without torch, and torch's float32 steps decide

    return torch.linspace(0, stack - 1, frames).long().tolist()


def segment_middle_offsets(stack: int, frames: int) -> list[int]:
    """The middle frame of each of ``frames`` equal segments of the window (TimeSformer's SSv2
    loader, with numpy's round (half to even) and Python's round alike)."""
    size = (stack - 1) / frames
    return [(round(size * i) + round(size * (i + 1))) // 2 for i in range(frames)]


SAMPLINGS = {"linspace": linspace_offsets, "segment_middle": segment_middle_offsets}


def network_offsets(stack: int, num_frames: Optional[int], sampling: str) -> tuple[int, ...]:
    """The frames of a window the network sees: all of them, or ``num_frames`` picked by ``sampling``.

    Raises ValueError when the window is shorter than the frames the network needs."""
    if num_frames is None:
        return tuple(range(stack))
    if stack < num_frames:
        raise ValueError(f"a window must hold at least the {num_frames} frames the network sees")
    return tuple(SAMPLINGS[sampling](stack, num_frames))


@dataclass(frozen=True)
class WindowPlan:
    stack: int
    step: int
    offsets: tuple[int, ...]  # the frames of a window the network sees, relative to its start

    def count(self, n_frames: int) -> int:
        """Windows cut from ``n_frames`` frames (1 for a video shorter than a window)."""
        return (n_frames - self.stack) // self.step + 1 if n_frames >= self.stack else 1

    @functools.cached_property
    def _offset_set(self) -> frozenset:
        return frozenset(self.offsets)

    @functools.cached_property
    def leaves_frames_out(self) -> bool:
        """Whether some frames are in no window, so that decoding may skip them. Past the first
        window, which frames are used repeats every ``step`` frames."""
        return not all(self.uses(index) for index in range(self.stack + self.step))

    def uses(self, index: int, first_window: int = 0, end_window: Optional[int] = None) -> bool:
        """Whether any window (of those in [first_window, end_window)) shows frame ``index`` to the network."""
        first = max(first_window, -(-(index - self.stack + 1) // self.step))
        last = index // self.step if end_window is None else min(index // self.step, end_window - 1)
        return any(index - k * self.step in self._offset_set for k in range(first, last + 1))


@dataclass
class Window:
    index: int
    frames: list[Any]  # the offsets' preprocessed frames, each (C, h, w) or (crops, C, h, w)
    start: float  # seconds: presentation time of the window's first frame
    end: float  # seconds: presentation time of its last frame plus one frame duration


class WindowAssembler:
    """Collects one video's preprocessed frames and cuts windows as soon as they are complete: the
    windows [first_window, end_window) of the video (a segment's, utils/video/segments.py).

    Holds only the frames that a window not yet cut still needs, so memory is bounded by one
    window whatever the video's length.
    """

    def __init__(self, plan: WindowPlan, frame_duration: float, first_window: int = 0,
                 end_window: Optional[int] = None):
        self.plan = plan
        self.frame_duration = frame_duration
        self.first_window, self.end_window = first_window, end_window
        self.windows_cut = 0
        self._frames: dict[int, Any] = {}
        self._start_times: dict[int, float] = {}
        self._last_index = -1
        self._last_time = 0.0

    def add(self, index: int, time: float, frame: Optional[Any]) -> Optional[Window]:
        """Takes frame ``index`` (None if no window uses it); returns the window it completes."""
        plan = self.plan
        if frame is not None:
            self._frames[index] = frame
        if index % plan.step == 0:
            self._start_times[index // plan.step] = time
        self._last_index, self._last_time = index, time
        window, remainder = divmod(index - plan.stack + 1, plan.step)
        if window < self.first_window or remainder != 0 or (self.end_window is not None and window >= self.end_window):
            return None
        first = window * plan.step
        cut = self._cut(window, [first + offset for offset in plan.offsets], time)
        next_first = first + plan.step
        self._frames = {i: f for i, f in self._frames.items() if i >= next_first}
        self._start_times.pop(window)
        return cut

    def finish(self) -> Optional[Window]:
        """At the end of the video: the padded window of a video shorter than one window."""
        if self.windows_cut or self._last_index < 0 or self.first_window > 0:
            return None
        last = self._last_index
        # frames past the end repeat the last one, as if the video froze on it
        return self._cut(0, [min(offset, last) for offset in self.plan.offsets], self._last_time)

    def _cut(self, window: int, indices: list[int], last_time: float) -> Window:
        self.windows_cut += 1
        frames = [self._frames[i] for i in indices]
        return Window(window, frames, self._start_times[window], last_time + self.frame_duration)
