"""The decoding threads: each takes videos from a shared list, decodes them (utils/video.py),
preprocesses the frames a window uses on the network's device, and sends typed messages to the
pipeline's main thread through a bounded queue (utils/pipeline.py), so that memory stays flat
whatever a video's length.

The messages of one video, in order: ``Started``, ``Frames``..., then ``Ended`` or ``Failed``;
``Restarted`` voids what was sent for it so far and is followed by a new ``Started``. A video the
caller's ``skip`` accepts gets ``Skipped`` alone. A thread's last message is ``DecoderDone``.
"""
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from utils.reencode import reencode_to_fps
from utils.skipping import SkipMismatch
from utils.video import Frame, VideoError, VideoReader
from utils.windows import WindowPlan

FRAMES_PER_MESSAGE = 8  # preprocessed frames per queue message

# (index, time, preprocessed frame, or None for a frame no window uses)
PreprocessedFrame = tuple[int, float, Optional[torch.Tensor]]


@dataclass(frozen=True)
class Skipped:
    job: int
    path: str
    reason: str


@dataclass(frozen=True)
class Started:
    job: int
    path: str
    fps: float
    estimated_frames: Optional[int]


@dataclass(frozen=True)
class Frames:
    job: int
    frames: list[PreprocessedFrame]


@dataclass(frozen=True)
class Ended:
    job: int


@dataclass(frozen=True)
class Failed:
    job: int
    path: str
    error: str  # one line


@dataclass(frozen=True)
class Restarted:
    job: int


@dataclass(frozen=True)
class DecoderDone:
    pass


class Stopped(Exception):
    """The consumer has gone: the thread ends without sending more."""


@dataclass
class Decoding:
    """What every decoding thread of a run needs to know."""

    plan: WindowPlan
    preprocess: Callable[[torch.Tensor], torch.Tensor]  # (1, H, W, 3) uint8 on device -> (1, C, h, w)
    device: torch.device
    extraction_fps: Optional[float] = None
    fps_method: str = "filter"  # or "reencode": the ffmpeg program's re-encode into tmp_path
    tmp_path: str = "./tmp"
    keep_tmp_files: bool = False
    keep_partial: bool = False  # a truncated or damaged video keeps its windows, with a warning
    codec_threads: int = 0  # FFmpeg's threads per video; 0: its default, one per core


def decode_jobs(decoding: Decoding, jobs: queue.SimpleQueue, skip: Optional[Callable[[str], Optional[str]]],
                messages: queue.Queue, stop: threading.Event) -> None:
    """One decoding thread: takes (job, path) from ``jobs`` until none is left."""

    def send(message) -> None:
        while not stop.is_set():
            try:
                messages.put(message, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Stopped

    if decoding.device.type == "cpu":
        # The network's threads need every core. Left to their default, this thread's torch calls
        # start an OpenMP team of their own that competes with them and wakes thousands of times a
        # minute (benchmarks/profile_threads.py). The pipeline keeps the main thread's count.
        torch.set_num_threads(1)
    try:
        while True:
            try:
                job, path = jobs.get_nowait()
            except queue.Empty:
                break
            reason = skip(path) if skip is not None else None
            if reason:
                send(Skipped(job, path, reason))
                continue
            try:
                _decode(decoding, job, path, send)
            except (VideoError, OSError) as error:
                send(Failed(job, path, str(error)))
            except Stopped:
                raise
            except Exception as error:  # an unforeseen decoder error must not stop the other videos
                send(Failed(job, path, f"{type(error).__name__}: {error}"))
        send(DecoderDone())
    except Stopped:
        pass


def _decode(decoding: Decoding, job: int, path: str, send: Callable) -> None:
    source, reencoded = path, None
    if decoding.extraction_fps and decoding.fps_method == "reencode":
        source = reencoded = reencode_to_fps(path, decoding.extraction_fps, decoding.tmp_path)
    fps = None if reencoded else decoding.extraction_fps
    try:
        try:
            _send_frames(decoding, job, path, VideoReader(source, fps, decoding.codec_threads, decoding.keep_partial),
                         send, decoding.plan.skips_frames)
        except SkipMismatch:
            # frames could not be numbered before decoding (e.g. no timestamps): start again, decoding all
            send(Restarted(job))
            _send_frames(decoding, job, path, VideoReader(source, fps, decoding.codec_threads, decoding.keep_partial),
                         send, skip_unwanted=False)
    finally:
        if reencoded and not decoding.keep_tmp_files:
            os.remove(reencoded)


def _send_frames(decoding: Decoding, job: int, path: str, reader: VideoReader, send: Callable,
                 skip_unwanted: bool) -> None:
    with reader:
        send(Started(job, path, reader.fps, reader.estimated_frames))
        frames, images = [], 0
        for frame in reader.frames(decoding.plan.uses, skip_unwanted):
            frames.append(frame)
            images += frame.image is not None
            if images == FRAMES_PER_MESSAGE:
                send(Frames(job, _preprocessed(decoding, frames)))
                frames, images = [], 0
        send(Frames(job, _preprocessed(decoding, frames)))
        send(Ended(job))


def _preprocessed(decoding: Decoding, frames: list[Frame]) -> list[PreprocessedFrame]:
    """The network input of each frame a window uses, computed on the device.

    It runs here rather than on the main thread, one image at a time, so that each large
    decoded image is allocated and freed by one thread with no stacked copy: handing them to
    another thread made glibc's heap grow with the video's length (benchmarks/: +80 % peak
    RSS over a 10-minute video).
    """
    try:
        with torch.inference_mode():
            return [(f.index, f.time, None if f.image is None else _network_input(decoding, f.image)) for f in frames]
    except Exception as error:  # e.g. a frame size the preprocessing cannot take
        raise VideoError(f"preprocessing failed: {type(error).__name__}: {error}") from error


def _network_input(decoding: Decoding, image: np.ndarray) -> torch.Tensor:
    """One decoded (H, W, 3) RGB image -> the network's preprocessed (C, h, w) tensor on the device."""
    frame = torch.from_numpy(image)[None]
    if decoding.device.type == "cuda":
        frame = frame.pin_memory().to(decoding.device, non_blocking=True)
    return decoding.preprocess(frame)[0]
