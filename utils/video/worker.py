"""A decoding process: decodes the videos and segments it is given and hands their frames over as
the uint8 pixels the network's resize reads, through slots of memory shared with the pipeline.

It imports no torch (start-up and memory) and runs no network: per frame it decodes, converts to
RGB and gathers the taps (utils/frames/preprocessing.py) into a slot; per slot it sends one small message.
The pipeline (utils/pipeline.py, through utils/video/pool.py) owns the scheduling: it hands a
process a video (``OpenVideo``: the process indexes it, cuts it into segments and decodes the
first) or a segment of one (``DecodeSegment``), and gives each slot back (``Released``) once the
slot's pixels have been copied out. Running in its own process, the per-frame Python work here
never holds the interpreter lock of the process that feeds the network.

Messages to the pipeline, per video or segment: ``Opened`` (after an ``OpenVideo``), ``SlotFilled``...,
then ``SegmentDone``, ``Failed`` or ``Restart`` (the frames could not be numbered before decoding:
decode the video again in one piece). Warnings raised while decoding are sent as ``Warned``.

    python -m utils.video.worker CONNECTION_FD BUFFER_FD   (started by utils/video/pool.py)
"""
import hashlib
import mmap
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Optional

import av
import numpy as np

from utils.frames.preprocessing import frame_taps, gather
from utils.frames.slots import SLOTS, SlotLayout
from utils.frames.windows import WindowPlan
from utils.video.frame_index import first_frame_from
from utils.video.numbering import NumberingMismatch
from utils.errors import VideoError
from utils.video.completeness import Completeness, DecodeStats
from utils.video.reader import VideoReader
from utils.video.rgb import rgb_view
from utils.video.reencode import reencode_to_fps
from utils.video.segments import Segment, split, whole

@dataclass(frozen=True)
class Settings:
    """What every job of a run shares."""

    plan: WindowPlan
    layout: SlotLayout
    extraction_fps: Optional[float]
    fps_method: str  # "filter" or "reencode"
    tmp_path: str
    keep_tmp_files: bool
    max_segments: int  # a long video is cut into at most this many segments
    min_segment_seconds: float


@dataclass(frozen=True)
class OpenVideo:
    job: int
    attempt: int  # 0, then 1 for the decode in one piece after a Restart
    path: str
    threads: int = 1  # FFmpeg's decoding threads


@dataclass(frozen=True)
class DecodeSegment:
    job: int
    attempt: int
    path: str
    segment: Segment
    threads: int = 1


@dataclass(frozen=True)
class Released:
    slot: int


@dataclass(frozen=True)
class Opened:
    job: int
    attempt: int
    fps: float
    estimated_frames: Optional[int]
    completeness: Completeness
    segments: list[Segment]  # the first is decoded by the process that opened the video


@dataclass(frozen=True)
class SlotFilled:
    job: int
    attempt: int
    segment: int
    slot: int
    images: int  # frames with pixels in the slot, in the order of ``indices`` where ``has_image``
    indices: np.ndarray  # int64: every frame of the stretch, in order
    times: np.ndarray  # float64 seconds
    has_image: np.ndarray  # bool


@dataclass(frozen=True)
class SegmentDone:
    job: int
    attempt: int
    segment: int
    stats: DecodeStats
    digests: dict[int, bytes]  # frame -> digest of its pixels: the first a window uses, and the next segment's


@dataclass(frozen=True)
class Failed:
    job: int
    attempt: int
    error: str  # one line


@dataclass(frozen=True)
class Restart:
    job: int
    attempt: int
    reason: str


@dataclass(frozen=True)
class Warned:
    job: int
    message: str


class Worker:
    def __init__(self, connection: Connection, buffer: mmap.mmap, settings: Settings):
        self.connection, self.buffer, self.settings = connection, buffer, settings
        self.free_slots = list(range(SLOTS))
        self.rgb = av.video.reformatter.VideoReformatter()

    def serve(self) -> None:
        """Jobs until the pipeline closes the connection."""
        while True:
            try:
                message = self.connection.recv()
            except EOFError:
                return
            if isinstance(message, Released):
                self.free_slots.append(message.slot)
            else:
                self.run(message)

    def run(self, job) -> None:
        """Runs a job; its warnings go to the pipeline before its last message."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                done = self.open_video(job) if isinstance(job, OpenVideo) else self.decode(job, job.path, job.segment)
            except NumberingMismatch as mismatch:
                done = Restart(job.job, job.attempt, f"frames not as the index numbers them: {mismatch}")
            except (VideoError, OSError) as error:
                done = Failed(job.job, job.attempt, str(error))
            except Exception as error:  # an unforeseen decoder error fails this video, not the process
                done = Failed(job.job, job.attempt, f"{type(error).__name__}: {error}")
        for warning in caught:
            self.connection.send(Warned(job.job, str(warning.message)))
        self.connection.send(done)

    def open_video(self, job: OpenVideo) -> SegmentDone:
        """Opens a video, cuts it into segments where it is long enough (the pipeline hands the others
        out) and decodes the first. After a Restart: in one piece, every frame decoded."""
        settings = self.settings
        if settings.extraction_fps and settings.fps_method == "reencode":
            source = reencode_to_fps(job.path, settings.extraction_fps, settings.tmp_path)
            try:
                reader = VideoReader(source, None, job.threads)
                self.opened(job, reader, [whole(None)])
                return self.decode(job, source, whole(None), reader)
            finally:
                if not settings.keep_tmp_files:
                    os.remove(source)
        reader = VideoReader(job.path, settings.extraction_fps, job.threads)
        # a file that declares no duration (a live stream's Matroska) may be long: its index tells
        minimum = 2 * settings.min_segment_seconds
        may_split = settings.max_segments > 1 and (reader.duration is None or reader.duration >= minimum)
        skips = reader.skippable and settings.plan.leaves_frames_out
        index = reader.index() if job.attempt == 0 and (skips or may_split) else None
        segments = [whole(index)]
        if index is not None and may_split:
            planned = split(index, settings.plan, reader.time_base, reader.shift, settings.extraction_fps,
                            settings.max_segments, settings.min_segment_seconds)
            # a key frame a decoder does not start at cleanly (a recovery point) would restart every segment
            if len(planned) == 1 or first_frame_from(job.path, 0, planned[1].cut) == planned[1].cut.pts:
                segments = planned
        self.opened(job, reader, segments)
        return self.decode(job, job.path, segments[0], reader)

    def opened(self, job: OpenVideo, reader: VideoReader, segments: list[Segment]) -> None:
        self.connection.send(Opened(job.job, job.attempt, reader.fps, reader.estimated_frames,
                                    reader.completeness, segments))

    def decode(self, job, path: str, segment: Segment, reader: Optional[VideoReader] = None) -> SegmentDone:
        """Sends the segment's frames, a slot at a time; returns its stats."""
        settings = self.settings
        if reader is None:
            reader = VideoReader(path, settings.extraction_fps, job.threads)
        plan, layout = settings.plan, settings.layout
        only_used = job.attempt == 0 and plan.leaves_frames_out
        stretch = Stretch(self, job, segment.number)
        # the frames two segments both decode, whose pixels the pipeline compares
        compared = {segment.next_first} | ({segment.first_used(plan)} if segment.number else set())
        digests = {}
        with reader:
            uses = lambda index: plan.uses(index, segment.first_window, segment.end_window)  # noqa: E731
            for decoded in reader.decoded(lambda index: uses(index) or index in compared, only_used, segment):
                image = None
                if decoded.wanted and decoded.frame is not None:
                    image = rgb_view(self.rgb, decoded.frame)
                    if decoded.index in compared:
                        digests[decoded.index] = hashlib.blake2b(np.ascontiguousarray(image)).digest()
                    if decoded.index == segment.next_first and not uses(decoded.index):
                        image = None  # decoded only to be compared
                stretch.add(decoded.index, decoded.time, image, layout)
            stretch.send()
        return SegmentDone(job.job, job.attempt, segment.number, reader.stats, digests)

    def take_slot(self) -> int:
        """A free slot, waiting for the pipeline to give one back if need be."""
        while not self.free_slots:
            message = self.connection.recv()
            if isinstance(message, Released):
                self.free_slots.append(message.slot)
        return self.free_slots.pop()


class Stretch:
    """The frames gathered into one slot, sent when the slot is full, the frame size changes or the
    segment ends."""

    def __init__(self, worker: Worker, job, segment: int):
        self.worker, self.job, self.segment = worker, job, segment
        self.slot: Optional[int] = None
        self.taps = None
        self.indices, self.times, self.has_image = [], [], []
        self.images = 0

    def add(self, index: int, time: float, image: Optional[np.ndarray], layout: SlotLayout) -> None:
        if image is not None:
            taps = frame_taps(layout.preprocessing, layout.crops, image.shape[0], image.shape[1])
            if self.taps is not None and taps is not self.taps:
                self.send()
            if self.slot is None:
                self.slot = self.worker.take_slot()
            row_weights, column_weights, pixels = layout.views(self.worker.buffer, self.slot)
            if self.taps is None:
                self.taps = taps
                row_weights[:], column_weights[:] = taps.row_weights, taps.column_weights
            gather(image, taps, pixels[self.images])
            self.images += 1
        self.indices.append(index)
        self.times.append(time)
        self.has_image.append(image is not None)
        if self.images == layout.frames:
            self.send()

    def send(self) -> None:
        if not self.indices:
            return
        slot = -1 if self.slot is None else self.slot
        self.worker.connection.send(SlotFilled(
            self.job.job, self.job.attempt, self.segment, slot, self.images, np.array(self.indices, dtype=np.int64),
            np.array(self.times, dtype=np.float64), np.array(self.has_image, dtype=bool)))
        self.slot, self.taps, self.images = None, None, 0
        self.indices, self.times, self.has_image = [], [], []


def _stop(number, frame) -> None:
    raise SystemExit(128 + number)  # unwinds: a re-encode's temporary file is removed on the way out


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pipeline decides when to stop, and stops this process
    signal.signal(signal.SIGTERM, _stop)
    connection = Connection(int(sys.argv[1]))
    settings = connection.recv()
    buffer_fd = int(sys.argv[2])
    buffer = mmap.mmap(buffer_fd, SLOTS * settings.layout.bytes)
    os.close(buffer_fd)
    try:
        Worker(connection, buffer, settings).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the pipeline has gone


if __name__ == "__main__":
    # run from the module imported under its own name, so that the messages it pickles name
    # utils.video.worker (the pipeline's copy of these classes), not __main__
    from utils.video.worker import main as serve

    serve()
