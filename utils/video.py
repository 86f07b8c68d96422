"""Streaming video decoding with PyAV, and frame-rate resampling.

Frames come out one at a time, so memory does not grow with the video's length. Resampling to
``extraction_fps`` pushes the decoded frames through FFmpeg's own ``fps`` filter inside this
process, so the frames kept are exactly those ``ffmpeg -filter:v fps=fps=X`` keeps, without a
temporary file. Only the frames a window uses are converted to RGB: the others are decoded (the
codec needs them) but their colour conversion is skipped.
"""
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av
import numpy as np


class VideoError(Exception):
    """A video cannot be read. The message is one line that names the cause."""


@dataclass
class Frame:
    index: int  # position in the (resampled) frame sequence
    time: float  # presentation time in seconds, from the start of the file
    image: Optional[np.ndarray]  # (H, W, 3) RGB uint8, or None for a frame no window uses


def _describe(error: Exception) -> str:
    """PyAV errors carry the path and an errno prefix; keep only the cause."""
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


class VideoReader:
    """Decodes the first video stream of a file, optionally resampled to ``extraction_fps``."""

    def __init__(self, path: str, extraction_fps: Optional[float] = None, codec_threads: int = 0):
        """``codec_threads``: FFmpeg's decoding threads for this file; 0 lets FFmpeg pick (one per core)."""
        self.path = path
        if not os.path.exists(path):
            raise VideoError("file not found")
        if os.path.isdir(path):
            raise VideoError("is a directory, not a video file")
        try:
            self._container = av.open(path)
        except av.error.FFmpegError as error:
            raise VideoError(f"cannot open: {_describe(error)}") from error
        if not self._container.streams.video:
            self._container.close()
            raise VideoError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = codec_threads
        self._extraction_fps = extraction_fps
        native = self._stream.average_rate or self._stream.guessed_rate
        if extraction_fps:
            self.fps = float(Fraction(str(extraction_fps)))
        elif native:
            self.fps = float(native)
        else:
            self.close()
            raise VideoError("the stream declares no frame rate; set extraction_fps")
        # The ffmpeg CLI shifts timestamps so the file starts at 0; do the same.
        start = self._container.start_time
        self._start_seconds = start / av.time_base if start is not None else 0.0
        duration = self._container.duration
        self.duration = duration / av.time_base if duration else None

    @property
    def estimated_frames(self) -> Optional[int]:
        return round(self.duration * self.fps) if self.duration else None

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def frames(self, wanted: Callable[[int], bool] = lambda index: True) -> Iterator[Frame]:
        """Yields every frame in order; ``image`` is filled only where ``wanted(index)`` is true.

        The last frame always carries its image, so that a video shorter than one window can be
        padded with it.
        """
        rgb = av.video.reformatter.VideoReformatter()  # one for all frames: +20 % over per-frame
        previous = None
        index = 0
        try:
            for frame in self._resampled() if self._extraction_fps else self._native():
                if previous is not None:
                    yield previous[1]
                time = float(frame.pts * frame.time_base) if frame.pts is not None else index / self.fps
                image = rgb.reformat(frame, format="rgb24").to_ndarray() if wanted(index) else None
                previous = (frame, Frame(index, time, image))
                index += 1
        except av.error.FFmpegError as error:
            raise VideoError(f"decoding failed at frame {index}: {_describe(error)}") from error
        if previous is None:
            raise VideoError("no video frames could be decoded")
        frame, last = previous
        if last.image is None:
            last.image = rgb.reformat(frame, format="rgb24").to_ndarray()
        yield last

    def _native(self):
        for frame in self._container.decode(self._stream):
            if frame.pts is not None:
                frame.pts -= round(self._start_seconds / frame.time_base)
            yield frame

    def _resampled(self):
        graph = av.filter.Graph()
        source = graph.add_buffer(template=self._stream)
        fps = graph.add("fps", f"fps={self._extraction_fps}")
        sink = graph.add("buffersink")
        source.link_to(fps)
        fps.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    yield graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return

        for index, frame in enumerate(self._native()):
            if frame.pts is None:  # raw streams without timestamps: assume a constant rate
                frame.pts = round(index / self._stream.average_rate / self._stream.time_base)
            graph.push(frame)
            yield from drain()
        graph.push(None)
        yield from drain()


def reencode_to_fps(path: str, fps: float, tmp_dir: str) -> str:
    """video_features' method: re-encode with the ffmpeg CLI's fps filter into ``tmp_dir``.

    Lossy (a second H.264 encode), so features differ slightly from the in-process filter.
    """
    import ffmpeg  # ffmpeg-python; only this method needs it

    os.makedirs(tmp_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]  # same stems, other folders
    out = os.path.join(tmp_dir, f"{stem}_{tag}_new_fps.mp4")
    try:
        (
            ffmpeg.input(path)
            .output(out, an=None, **{"filter:v": f"fps=fps={fps}"})
            .run(quiet=True, overwrite_output=True)
        )
    except ffmpeg.Error as error:
        if os.path.exists(out):
            os.remove(out)
        lines = error.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"ffmpeg re-encoding failed: {lines[-1] if lines else 'no message'}") from error
    return out


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None
