"""Cutting a video into segments of whole windows that several processes decode at once.

Segment k holds windows [first_window, end_window) and starts decoding at the last cut (a key
frame, utils/video/frame_index.py) at or before the first frame they need, so its frames are the frames
a decode of the whole video gives: the windows of all segments, put back in order, are the
video's windows. Each segment also owns a stretch of the source's timeline, [owned_from,
owned_until) in seconds, that together cover the video once: a source frame is counted (for the
truncation and damage checks of utils/video/reader.py) by the segment that owns it.

With ``extraction_fps`` the frames are the fps filter's output: a segment's frame ``n`` is the
n-th output frame of the whole video's filter, whose grid starts at the video's first frame. A
segment therefore starts where the output frame before its first one would start, one output
frame of margin for the filter's rounding of timestamps to its grid (utils/video/reader.py checks it).

Every segment after the first is checked while it is decoded, so that no stream the planner did not
foresee can change the features: its source frames must be the index's, one by one from its key
frame on (utils/video/numbering.py), and its first frame a window uses is decoded by the segment
before it too, so that the pipeline compares the two decodes' pixels (``next_first``). A video
whose check fails is decoded again in one piece.
"""
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np

from video_features.utils.frames.windows import WindowPlan
from video_features.utils.video.frame_index import MAX_REORDER, Cut, FrameIndex

MIN_SEGMENT_SECONDS = 10.0  # shorter segments spend too much of their time decoding up to their first frame


@dataclass(frozen=True)
class Segment:
    """A part of a video decoded on its own. Frames are numbered as in the whole video: positions
    in presentation order, or output frames of the fps filter with ``extraction_fps``."""

    number: int  # 0, 1, ... in the video's order
    last: bool  # the video's last segment, decoded to the end
    first_window: int
    end_window: Optional[int]  # None for the last segment
    cut: Cut  # where decoding starts
    first_frame: int  # frames before it are decoded only as references
    until: Optional[int]  # one past the last frame decoded; None: to the end
    owned_from: float  # seconds: the source frames this segment counts
    owned_until: Optional[float]
    origin_pts: int  # the video's first frame's pts: where the fps filter's grid starts
    pts: Optional[np.ndarray] = None  # the index's pts from the cut's position on: the source frames decoded
    next_first: Optional[int] = None  # the next segment's first frame a window uses, also decoded here

    def first_used(self, plan: WindowPlan) -> int:
        """The first frame a window of this segment uses."""
        return self.first_window * plan.step + min(plan.offsets)


def whole(index: Optional[FrameIndex]) -> Segment:
    """The whole video as one segment."""
    start = index.cuts[0] if index is not None else Cut(0, 0, 0, 0)
    return Segment(number=0, last=True, first_window=0, end_window=None, cut=start, first_frame=0, until=None,
                   owned_from=float("-inf"), owned_until=None, origin_pts=start.pts,
                   pts=None if index is None else index.pts)


def segment_count(duration: float, windows: int, max_segments: int, min_seconds: float = MIN_SEGMENT_SECONDS) -> int:
    """How many segments a video's length allows: at most ``max_segments``, each of at least
    ``min_seconds`` and a window."""
    return max(1, min(max_segments, int(duration // min_seconds), windows))


def split(index: FrameIndex, plan: WindowPlan, time_base: Fraction, shift: int, extraction_fps: Optional[float],
          max_segments: int, min_seconds: float = MIN_SEGMENT_SECONDS) -> list[Segment]:
    """Up to ``max_segments`` segments of about equal numbers of windows and at least ``min_seconds``
    each; fewer where the key frames are sparse (segments never share a cut)."""
    seconds = lambda pts: float((int(pts) - shift) * time_base)  # noqa: E731
    origin = seconds(index.pts[0])
    duration = seconds(index.pts[-1]) - origin
    if extraction_fps:
        frames = int(duration * extraction_fps) + 1
        frame_time = lambda n: origin + n / extraction_fps  # noqa: E731  (to within half an output frame)
    else:
        frames = index.frames
        frame_time = lambda n: seconds(index.pts[n])  # noqa: E731
    windows = plan.count(frames)
    count = segment_count(duration, windows, max_segments, min_seconds)
    starts = []  # (first window, cut) of every segment after the first
    for k in range(1, count):
        first_window = round(k * windows / count)
        first_frame = first_window * plan.step
        if extraction_fps:  # the last cut that the filter surely rounds to before the segment's first frame
            latest = frame_time(first_frame - 1)
            cuts = [cut for cut in index.cuts if seconds(cut.pts) <= latest]
            cut = cuts[-1]
        else:
            cut = index.cut_at_or_before(first_frame)
        if cut.packet > (starts[-1][1].packet if starts else 0):
            starts.append((first_window, cut))
    bounds = [(0, index.cuts[0])] + starts + [(None, None)]
    segments = []
    for number, ((first_window, cut), (end_window, _)) in enumerate(zip(bounds, bounds[1:])):
        first_frame = first_window * plan.step
        next_first, until = None, None
        if end_window is not None:
            next_first = end_window * plan.step + min(plan.offsets)
            until = max(next_first + 1, (end_window - 1) * plan.step + plan.stack)
        if extraction_fps:  # the source frames up to a second past the segment's last output frame
            last_pts = index.pts[0] + (frame_time(until) + 1.0 - origin) / time_base if until is not None else None
            end = index.frames
            if until is not None:
                end = min(index.frames, int(np.searchsorted(index.pts, last_pts)) + MAX_REORDER)
        else:
            end = until
        segments.append(Segment(
            number=number, last=end_window is None, first_window=first_window, end_window=end_window, cut=cut,
            first_frame=first_frame, until=until,
            owned_from=float("-inf") if number == 0 else frame_time(first_frame),
            owned_until=None if end_window is None else frame_time(end_window * plan.step),
            origin_pts=int(index.pts[0]), pts=index.pts[cut.position:end], next_first=next_first,
        ))
    return segments
