"""A decoding process: decodes the videos and segments it is given and hands their frames over as
the uint8 pixels the network's resize reads, through slots of memory shared with the pipeline.

It imports no torch (start-up and memory) and runs no network: per frame it decodes, converts to
RGB and gathers the taps (utils/frames/preprocessing.py) into a slot; per slot it sends one small
message. The pipeline (utils/pipeline/, through utils/video/pool.py) owns the scheduling; what they
say to each other is utils/video/protocol.py. Running in its own process, the per-frame Python work
here never holds the interpreter lock of the process that feeds the network.

    python -m video_features.utils.video.worker CONNECTION_FD BUFFER_FD   (started by utils/video/pool.py)
"""
import hashlib
import mmap
import os
import signal
import sys
import warnings
from multiprocessing.connection import Connection
from typing import Optional

import av
import numpy as np

from video_features.utils.errors import VideoError
from video_features.utils.frames.preprocessing import frame_taps, gather
from video_features.utils.frames.slots import SLOTS, SlotLayout
from video_features.utils.video.frame_index import first_frame_from
from video_features.utils.video.numbering import NumberingMismatch
from video_features.utils.video.open_ahead import OpenedAhead
from video_features.utils.video.protocol import (
    DecodeSettings,
    DecodeWhole,
    DropOpenedAhead,
    Failed,
    FewerSegments,
    Opened,
    OpenVideo,
    Released,
    SegmentDone,
    SlotFilled,
    Task,
    Warned,
)
from video_features.utils.video.reader import VideoReader
from video_features.utils.video.reencode import reencode_to_fps
from video_features.utils.video.remote import RemoteFile, is_remote
from video_features.utils.video.rgb import rgb_view
from video_features.utils.video.segments import Segment, segment_count, split, whole


class Worker:
    def __init__(self, connection: Connection, buffer: mmap.mmap, settings: DecodeSettings):
        self.connection, self.buffer, self.settings = connection, buffer, settings
        self.free_slots = list(range(SLOTS))
        self.rgb = av.video.reformatter.VideoReformatter()
        self.ahead: Optional[OpenedAhead] = None  # the URL the pipeline gives this process next

    def serve(self) -> None:
        """Jobs until the pipeline closes the connection."""
        while True:
            try:
                message = self.connection.recv()
            except EOFError:
                return
            if not self.handled(message):
                self.run(message)

    def handled(self, message) -> bool:
        """Takes a message that may come while a task runs; False for a task."""
        match message:
            case Released():
                self.free_slots.append(message.slot)
            case DropOpenedAhead():
                if self.ahead is not None:
                    self.ahead.discard()
                self.ahead = None
            case _:
                return False
        return True

    def run(self, task: Task) -> None:
        """Runs a task; its warnings go to the pipeline before its last message."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if isinstance(task, OpenVideo):
                    done = self.open_video(task, self.opened_ahead(task))
                else:
                    done = self.decode(task, task.path, task.segment)
            except NumberingMismatch as mismatch:
                done = DecodeWhole(task.video, task.attempt, f"frames not as the index numbers them: {mismatch}")
            except (VideoError, OSError) as error:
                done = Failed(task.video, task.attempt, str(error))
            except Exception as error:  # an unforeseen decoder error fails this video, not the process
                done = Failed(task.video, task.attempt, f"{type(error).__name__}: {error}")
        for warning in caught:
            self.connection.send(Warned(task.video, str(warning.message)))
        self.connection.send(done)

    def opened_ahead(self, task: OpenVideo) -> Optional[RemoteFile]:
        """The task's URL if it was opened ahead, else None; then the opening of the next URL starts.
        An opening ahead for another URL is kept for a later task, until the next one replaces it."""
        this = None
        if self.ahead is not None and self.ahead.url == task.path:
            this, self.ahead = self.ahead, None
        if task.next_url is not None and not self.reencodes:
            if self.ahead is not None:
                self.ahead.discard()
            self.ahead = OpenedAhead(task.next_url, task.next_size, self.settings.remote)
        return this.take() if this is not None else None

    @property
    def reencodes(self) -> bool:
        return bool(self.settings.extraction_fps) and self.settings.fps_method == "reencode"

    def open_video(self, task: OpenVideo, file: Optional[RemoteFile] = None) -> SegmentDone:
        """Opens a video (``file``: its URL opened ahead), cuts it into segments where it is long enough
        (the pipeline hands the others out) and decodes the first. After a DecodeWhole: in one piece,
        every frame decoded."""
        settings = self.settings
        if self.reencodes:
            if is_remote(task.path):
                raise VideoError("fps_method=reencode reads local files only (the ffmpeg program re-encodes a "
                                 "copy); use fps_method=filter")
            source = reencode_to_fps(task.path, settings.extraction_fps, settings.tmp_path)
            try:
                reader = VideoReader(source, None, task.threads)
                fewer = FewerSegments.REENCODED if settings.max_segments > 1 else None
                self.opened(task, reader, [whole(None)], fewer)
                return self.decode(task, source, whole(None), reader)
            finally:
                if not settings.keep_tmp_files:
                    os.remove(source)
        reader = VideoReader(task.path, settings.extraction_fps, task.threads, task.size, settings.remote, file)
        segments, fewer = self.segments(task, reader)
        self.opened(task, reader, segments, fewer)
        return self.decode(task, task.path, segments[0], reader)

    def segments(self, task: OpenVideo, reader: VideoReader) -> tuple[list[Segment], Optional[FewerSegments]]:
        """The video's segments, and why they are fewer than asked where they are."""
        settings = self.settings
        # a file that declares no duration (a live stream's Matroska) may be long: its index tells
        long_enough = reader.duration is None or reader.duration >= 2 * settings.min_segment_seconds
        may_split = settings.max_segments > 1 and task.attempt == 0
        skips = reader.skippable and settings.plan.leaves_frames_out
        index = reader.index() if task.attempt == 0 and (skips or (may_split and long_enough)) else None
        if not may_split:
            return [whole(index)], None
        if not long_enough:
            return [whole(index)], FewerSegments.SHORT
        if index is None:
            return [whole(None)], FewerSegments.NO_INDEX
        planned = split(index, settings.plan, reader.time_base, reader.shift, settings.extraction_fps,
                        settings.max_segments, settings.min_segment_seconds)
        # a key frame a decoder does not start at cleanly (a recovery point) would restart every segment
        if len(planned) > 1 and first_frame_from(reader.source, 0, planned[1].cut) != planned[1].cut.pts:
            return [whole(index)], FewerSegments.RECOVERY_POINTS
        if len(planned) == settings.max_segments:
            return planned, None
        allowed = segment_count(reader.duration or 0.0, settings.plan.count(reader.estimated_frames or 0),
                                settings.max_segments, settings.min_segment_seconds)
        return planned, FewerSegments.SHORT if len(planned) >= allowed else FewerSegments.SPARSE_KEY_FRAMES

    def opened(self, task: OpenVideo, reader: VideoReader, segments: list[Segment],
               fewer: Optional[FewerSegments] = None) -> None:
        self.connection.send(Opened(task.video, task.attempt, reader.fps, reader.estimated_frames,
                                    reader.completeness, segments, fewer, reader.size))

    def decode(self, task: Task, path: str, segment: Segment, reader: Optional[VideoReader] = None) -> SegmentDone:
        """Sends the segment's frames, a slot at a time; returns its stats."""
        settings = self.settings
        if reader is None:
            reader = VideoReader(path, settings.extraction_fps, task.threads, task.size, settings.remote)
        plan, layout = settings.plan, settings.layout
        only_used = task.attempt == 0 and plan.leaves_frames_out
        stretch = Stretch(self, task, segment.number)
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
        return SegmentDone(task.video, task.attempt, segment.number, reader.stats, digests)

    def take_slot(self) -> int:
        """A free slot, waiting for the pipeline to give one back if need be."""
        while not self.free_slots:
            self.handled(self.connection.recv())
        return self.free_slots.pop()


class Stretch:
    """The frames gathered into one slot, sent when the slot is full, the frame size changes or the
    segment ends."""

    def __init__(self, worker: Worker, task: Task, segment: int):
        self.worker, self.task, self.segment = worker, task, segment
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
            self.task.video, self.task.attempt, self.segment, slot, self.images, np.array(self.indices, dtype=np.int64),
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
    main()
