"""Streaming video decoding with PyAV, and frame-rate resampling.

Frames come out one at a time, so memory does not grow with the video's length. Resampling to
``extraction_fps`` pushes the decoded frames through FFmpeg's own ``fps`` filter inside this
process, so the frames kept are exactly those ``ffmpeg -filter:v fps=fps=X`` keeps, without a
temporary file. Only the frames a window uses are converted to RGB, and with ``skip_unwanted``
the H.264/HEVC frames no window uses and no other frame references are not even decoded.
Frames a display matrix rotates (phone videos) come out upright, as the ffmpeg program shows them.
A file whose frames end well before the end it declares (truncated), or whose frames the decoder
flags as damaged, raises VideoError once its frames have been read (``keep_partial``: a warning).
"""
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av
import numpy as np

from utils.skipping import SKIPPABLE_CODECS, SkipMismatch, SkippingDecoder


# A video whose frames end more than this short of the end its file declares is reported as truncated:
# the larger of a time and a number of frames at the native rate. Complete files end within a frame.
TRUNCATED_SECONDS = 1.0
TRUNCATED_FRAMES = 2


class VideoError(Exception):
    """A video cannot be read. The message is one line that names the cause."""


class PartialVideo(UserWarning):
    """With ``keep_partial``: the video was read only in part (truncated, or corrupt data)."""


@dataclass
class Frame:
    index: int  # position in the (resampled) frame sequence
    time: float  # presentation time in seconds, from the start of the file
    image: Optional[np.ndarray]  # (H, W, 3) RGB uint8, or None for a frame no window uses


def _quarter_turns(degrees: float) -> int:
    """Counter-clockwise quarter turns (np.rot90's k) that show a frame as the ffmpeg program does.

    ``degrees`` is PyAV's ``VideoFrame.rotation``: the display matrix's angle, counter-clockwise
    (90 for a file tagged ``-metadata:s:v:0 rotate=90`` by the ffmpeg program; tests/test_video.py
    checks the direction against ffmpeg's autorotated re-encode). Angles that are not within a
    degree of a multiple of 90 are left as stored (ffmpeg would rotate those with its rotate filter);
    the flip of a mirrored display matrix is not applied.
    """
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) <= 1 else 0


def _rgb(reformatter, frame) -> np.ndarray:
    """The frame as (H, W, 3) RGB, turned upright as the ffmpeg program shows it (its autorotate)."""
    # one thread: by default swscale wakes a thread per core for every frame, and on a CPU those cores
    # are running the network; per-pixel conversion, so the pixels are the same (profile_threads.py)
    image = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    turns = _quarter_turns(frame.rotation) if frame.rotation else 0
    # callers hand the array to torch.from_numpy: keep it C-contiguous
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _describe(error: Exception) -> str:
    """PyAV errors carry the path and an errno prefix; keep only the cause."""
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


class VideoReader:
    """Decodes the first video stream of a file, optionally resampled to ``extraction_fps``."""

    def __init__(
        self, path: str, extraction_fps: Optional[float] = None, codec_threads: int = 0, keep_partial: bool = False
    ):
        """``codec_threads``: FFmpeg's decoding threads for this file; 0 lets FFmpeg pick (one per core).

        A video that is truncated (its frames end well before the end its file declares) or whose
        frames the decoder flags as damaged raises ``VideoError`` once all its frames have been
        yielded; with ``keep_partial`` a ``PartialVideo`` warning with the same message is given instead.
        """
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
        self._keep_partial = keep_partial
        self.skipped_frames = 0
        native = self._stream.average_rate or self._stream.guessed_rate
        self._frame_seconds = 1 / float(native) if native else 0.0
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
        self._video_end = self._declared_video_end()
        duration = self._container.duration
        # the video's own where the file gives it: an audio track can outlast the video
        self.duration = self._video_end or (duration / av.time_base if duration else None)
        # how far decoding got, in the source's frames (before resampling): see _decoded
        self._decoded_until: Optional[float] = None
        self._source_frames = 0
        self._corrupt_frames = 0
        self._first_corrupt: Optional[float] = None

    def _declared_video_end(self) -> Optional[float]:
        """Where the file says its video stream ends, in seconds from its start; None if it does not say.

        The stream's own duration where the demuxer gives one (MP4/MOV and AVI headers; MPEG-TS
        estimates it from the last timestamps); for Matroska/WebM, the DURATION tag ffmpeg and
        mkvmerge write for each track, read as an end time (ffmpeg writes one; where a writer gives
        the track's length instead, this reads an earlier end, so no false alarm); the container's
        duration, read likewise, only for a file with no other stream: audio may outlast the video.
        """
        stream, start = self._stream, self._start_seconds
        if stream.duration:
            begin = stream.start_time * stream.time_base - start if stream.start_time is not None else 0
            return float(begin + stream.duration * stream.time_base)
        tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
        if tag:
            try:
                hours, minutes, seconds = tag.split(":")
                end = int(hours) * 3600 + int(minutes) * 60 + float(seconds) - start
            except ValueError:
                end = 0
            if end > 0:
                return end
        if len(self._container.streams) == 1 and self._container.duration:
            end = self._container.duration / av.time_base - start
            return end if end > 0 else None
        return None

    @property
    def estimated_frames(self) -> Optional[int]:
        return round(self.duration * self.fps) if self.duration else None

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def frames(self, wanted: Callable[[int], bool] = lambda index: True, skip_unwanted: bool = False) -> Iterator[Frame]:
        """Yields every frame in order; ``image`` is filled only where ``wanted(index)`` is true.

        The last frame always carries its image, so that a video shorter than one window can be
        padded with it. ``skip_unwanted``: frames not wanted that no other frame references are
        not decoded at all (H.264 and HEVC at the native rate; ``skipped_frames`` counts them).
        Their index and time are the same as when every frame is decoded; where the stream does not
        allow that, ``SkipMismatch`` is raised, possibly after some frames have been yielded.
        """
        rgb = av.video.reformatter.VideoReformatter()  # one for all frames: +20 % over per-frame
        self._decoded_until, self._source_frames, self._corrupt_frames, self._first_corrupt = None, 0, 0, None
        if self._extraction_fps:
            decoded = self._timed(self._resampled())
        elif skip_unwanted and self._stream.codec_context.name in SKIPPABLE_CODECS:
            decoded = self._skipping(wanted)
        else:
            decoded = self._timed(self._native())
        previous = None
        index = 0
        try:
            for seconds, frame in decoded:  # frame None: skipped, never decoded
                if previous is not None:
                    yield previous[1]
                time = seconds if seconds is not None else index / self.fps
                image = _rgb(rgb, frame) if frame is not None and wanted(index) else None
                previous = (frame, Frame(index, time, image))
                index += 1
        except av.error.FFmpegError as error:
            raise VideoError(f"decoding failed at frame {index}: {_describe(error)}") from error
        if previous is None:
            raise VideoError("no video frames could be decoded")
        frame, last = previous
        if last.image is None:
            if frame is None:
                raise SkipMismatch("the last frame was skipped")
            last.image = _rgb(rgb, frame)
        yield last
        self._check_complete()

    def _decoded(self, seconds: Optional[float], frame_seconds: float, corrupt: bool) -> None:
        """Notes a source frame (decoded or skipped): where it ends, and whether the decoder flagged it."""
        self._source_frames += 1
        if seconds is not None:
            end = seconds + (frame_seconds or self._frame_seconds)
            if self._decoded_until is None or end > self._decoded_until:
                self._decoded_until = end
        if corrupt:
            self._corrupt_frames += 1
            if self._first_corrupt is None:
                self._first_corrupt = seconds

    def _check_complete(self) -> None:
        """After the last frame: raise VideoError (or warn, with keep_partial) if the video was read in part."""
        problems = []
        end, until = self._video_end, self._decoded_until
        if end is not None and until is not None and end - until > max(
            TRUNCATED_SECONDS, TRUNCATED_FRAMES * self._frame_seconds
        ):
            problems.append(
                f"truncated: decoding ended at {until:.1f} s of the declared {end:.1f} s ({self._source_frames} frames)"
            )
        if self._corrupt_frames:
            where = f", the first at {self._first_corrupt:.1f} s" if self._first_corrupt is not None else ""
            problems.append(
                f"corrupt data: {self._corrupt_frames} of {self._source_frames} frames decoded with errors{where}"
            )
        if problems:
            if not self._keep_partial:
                raise VideoError("; ".join(problems))
            warnings.warn(f"{self.path}: {'; '.join(problems)} (kept: keep_partial=true)", PartialVideo, stacklevel=3)

    @staticmethod
    def _timed(frames):
        for frame in frames:
            yield (float(frame.pts * frame.time_base) if frame.pts is not None else None), frame

    def _native(self):
        tick = float(self._stream.time_base)  # for _decoded: a Fraction per frame costs 3 us
        for frame in self._container.decode(self._stream):
            if frame.pts is not None:
                frame.pts -= round(self._start_seconds / frame.time_base)
            self._decoded(None if frame.pts is None else frame.pts * tick, frame.duration * tick, frame.is_corrupt)
            yield frame

    def _skipping(self, wanted: Callable[[int], bool]):
        """Like ``_timed(_native())``, with frame None for the frames not decoded (utils/skipping.py)."""
        decoder = SkippingDecoder(self._container, self._stream, self._start_seconds, wanted, self._decoded)
        try:
            yield from decoder.frames()
        finally:
            self.skipped_frames += decoder.skipped

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
