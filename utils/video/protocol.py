"""What the pipeline (utils/pipeline/) and its decoding processes (utils/video/worker.py) say to each
other, through a connection per process (utils/video/pool.py).

To a process: ``DecodeSettings`` once, then tasks (``OpenVideo``: index the video, cut it into
segments and decode the first; ``DecodeSegment``: decode another segment of it), ``Released`` slots
and ``DropOpenedAhead`` (another process took the video it was opening ahead). From a process, per
task: ``Opened`` (after an ``OpenVideo``), ``SlotFilled``..., then one of ``SegmentDone``,
``Failed`` or ``DecodeWhole`` (its frames could not be numbered before decoding, or its segments
disagree: decode the video again in one piece); warnings as ``Warned``. The pool adds ``Died`` when
a process ends without being asked to.

``video`` is the video's number in one extraction call; ``attempt`` counts its decodes (0, then 1
for the decode in one piece), so that messages of an attempt given up are recognised and dropped.
"""
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

import numpy as np

from video_features.utils.frames.slots import SlotLayout
from video_features.utils.frames.windows import WindowPlan
from video_features.utils.video.completeness import Completeness, DecodeStats
from video_features.utils.video.remote_retry import DEFAULT_POLICY, Policy
from video_features.utils.video.segments import Segment


@dataclass(frozen=True)
class DecodeSettings:
    """What every task of a run shares."""

    plan: WindowPlan
    layout: SlotLayout
    extraction_fps: Optional[float]
    fps_method: str  # "filter" or "reencode"
    tmp_path: str
    keep_tmp_files: bool
    max_segments: int  # a long video is cut into at most this many segments
    min_segment_seconds: float
    remote: Policy = DEFAULT_POLICY  # how hard a read of a URL tries


@dataclass(frozen=True)
class OpenVideo:
    video: int
    attempt: int
    path: str
    threads: int = 1  # FFmpeg's decoding threads
    size: Optional[int] = None  # bytes of a URL's file, where known (no request to ask for it)
    next_url: Optional[str] = None  # the URL this process opens next: it opens it while decoding this one
    next_size: Optional[int] = None


@dataclass(frozen=True)
class DecodeSegment:
    video: int
    attempt: int
    path: str
    segment: Segment
    threads: int = 1
    size: Optional[int] = None


Task = Union[OpenVideo, DecodeSegment]


@dataclass(frozen=True)
class Released:
    slot: int


@dataclass(frozen=True)
class DropOpenedAhead:
    """The video whose URL the process opens ahead (``OpenVideo.next_url``) went to another one."""


class FewerSegments(str, Enum):
    """Why a video was cut into fewer segments than decode_workers asks for (the run log says it)."""

    SHORT = "too short for more segments of 10 s"
    REENCODED = "fps_method=reencode reads its re-encoded copy in one piece"
    NO_INDEX = "its timestamps cannot number its frames (none, repeated, or going back as in concatenated MPEG-TS)"
    RECOVERY_POINTS = "its key frames are recovery points (intra refresh), where a decoder does not start cleanly"
    SPARSE_KEY_FRAMES = "its key frames are too far apart for more segments"


@dataclass(frozen=True)
class Opened:
    video: int
    attempt: int
    fps: float
    estimated_frames: Optional[int]
    completeness: Completeness
    segments: list[Segment]  # the first is decoded by the process that opened the video
    fewer_segments: Optional[FewerSegments] = None  # why fewer than asked, where they are
    size: Optional[int] = None  # a URL's bytes, for the segments' readers


@dataclass(frozen=True)
class SlotFilled:
    video: int
    attempt: int
    segment: int
    slot: int  # -1: no slot (none of the frames has pixels)
    images: int  # frames with pixels in the slot, in the order of ``indices`` where ``has_image``
    indices: np.ndarray  # int64: every frame of the stretch, in order
    times: np.ndarray  # float64 seconds
    has_image: np.ndarray  # bool


@dataclass(frozen=True)
class SegmentDone:
    video: int
    attempt: int
    segment: int
    stats: DecodeStats
    digests: dict[int, bytes]  # frame -> digest of its pixels: the first a window uses, and the next segment's


@dataclass(frozen=True)
class Failed:
    video: int
    attempt: int
    error: str  # one line


@dataclass(frozen=True)
class DecodeWhole:
    video: int
    attempt: int
    reason: str


@dataclass(frozen=True)
class Warned:
    video: int
    message: str


@dataclass(frozen=True)
class Died:
    """A decoding process ended without being asked to (not sent by it: the pool notices)."""

    worker: int
    task: Optional[Task]  # the task it was running
    exit_code: Optional[int]


FromDecoder = Union[Opened, SlotFilled, SegmentDone, Failed, DecodeWhole, Warned, Died]
ENDS_TASK = (SegmentDone, Failed, DecodeWhole)  # after one of these the process is idle
