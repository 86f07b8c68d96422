"""A video stream's frames in presentation order, and where decoding may start, read from its
packets, decoding only the first frames.

A frame's position is the number of frames with an earlier presentation timestamp. Reading every
packet's timestamp first (demuxing only: a few milliseconds per minute of video) gives each frame
its position before it is decoded: so frames no window uses need not be decoded
(utils/video/numbering.py), and a video can be cut into segments that several processes decode at once
(utils/video/segments.py), each numbering its frames as a decode of the whole video would.

A segment starts at a key frame K such that every frame shown from K on is decoded from K on: no
packet before K in the file is shown at or after K. Frames decoded after K but shown before it
(the leading frames of an open GOP) are dropped. Streams whose timestamps cannot give that order
(none, repeated ones, or ones that jump back, like concatenated MPEG-TS) get no index: they are
decoded in one piece, in the decoder's order.

The index holds the frames a decode of the whole file gives: a file cut without re-encoding (an
open-GOP stream copied into MPEG-TS from the middle) starts with frames that reference what was
cut away, which the decoder drops, so the frames shown before the first one it gives are left out.
Whether a decoder started at a key frame gives that frame first is a property of the stream, not
of its packets: a recovery point (x264's intra refresh) is flagged as a key frame, yet the decoder
drops the frames after it until the picture is rebuilt. ``first_frame_from`` tells.

A video is given by its path, or by an opener: a callable that returns a new file object each time
(``lambda: open_remote(url, size)``), since each pass reads it from the start.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional, Union

import av
import numpy as np

from video_features.utils.video.numbering import NumberingMismatch

# More than the deepest frame reordering H.264 and HEVC allow (16 frames): a packet further than
# this from its place in presentation order means the timestamps do not give that order.
MAX_REORDER = 32
# Packets decoded to find the first frame a decoder gives: a clean start gives it within the
# decoder's reordering delay; a recovery point (intra refresh) drops a whole refresh period.
PROBE_PACKETS = 2 * MAX_REORDER

Source = Union[str, Callable[[], BinaryIO]]  # a path, or an opener of a new file object


@contextmanager
def _opened(source: Source):
    """The container of a path, or of a file object from an opener (closed after it)."""
    if not callable(source):
        with av.open(source) as container:
            yield container
        return
    with source() as file, av.open(file) as container:
        yield container


@dataclass(frozen=True)
class Cut:
    """A key frame where decoding may start (packet 0: the file's start, where every frame is shown)."""

    position: int  # its frame's place in presentation order (0 at the file's start)
    pts: int  # its presentation timestamp (stream time base, unshifted); frames shown before it are dropped
    dts: int  # its decoding timestamp: what seeking goes by
    packet: int  # its place in the file's order of video packets

    @property
    def at_start(self) -> bool:
        return self.packet == 0


@dataclass(frozen=True)
class FrameIndex:
    pts: np.ndarray  # (frames,) int64: the shown frames' timestamps, ascending (edit-list discards left out)
    packet_pts: np.ndarray  # (packets,) int64: every video packet's pts in the file's order, discards included
    cuts: tuple[Cut, ...]  # key frames where decoding may start, in order; the first is the file's start

    @property
    def frames(self) -> int:
        return len(self.pts)

    def cut_at_or_before(self, position: int) -> Cut:
        """The last cut whose frame is at or before ``position``."""
        return max((cut for cut in self.cuts if cut.position <= position), key=lambda cut: cut.position)


def read_index(path: Source, stream_index: int) -> Optional[FrameIndex]:
    """The index of the file's video stream ``stream_index``, or None when its timestamps cannot
    number the frames (then it is decoded in one piece)."""
    with _opened(path) as container:
        stream = container.streams.video[stream_index]
        packets = [(packet.pts, packet.dts, packet.is_keyframe, packet.is_discard)
                   for packet in container.demux(stream) if packet.size]
    if not packets or any(pts is None for pts, *_ in packets):
        return None
    packet_pts = np.array([pts for pts, *_ in packets], dtype=np.int64)
    shown = np.array([not discard for *_, discard in packets])
    pts = np.sort(packet_pts[shown])
    if len(np.unique(pts)) != len(pts):
        return None
    positions = np.searchsorted(pts, packet_pts[shown])
    if np.abs(positions - np.arange(len(positions))).max() > MAX_REORDER:
        return None
    first = first_frame_from(path, stream_index, None)
    if first is None or first not in pts:
        return None
    pts = pts[pts >= first]  # those before the first frame the decoder gives are never shown
    cuts = [Cut(0, int(pts[0]), 0, 0)]
    shown_before = np.maximum.accumulate(np.where(shown, packet_pts, np.iinfo(np.int64).min))
    for number, (packet, dts, key, discard) in enumerate(packets[1:], start=1):
        if key and not discard and shown_before[number - 1] < packet:
            cuts.append(Cut(int(np.searchsorted(pts, packet)), packet, packet if dts is None else dts, number))
    return FrameIndex(pts, packet_pts, tuple(cuts))


def packets_from(container, stream, cut: Optional[Cut]):
    """The stream's packets from ``cut`` on (None: from the file's start), in the file's order."""
    packets = (packet for packet in container.demux(stream) if packet.size)
    if cut is None or cut.at_start:
        yield from packets
        return
    container.seek(cut.dts, stream=stream, backward=True, any_frame=False)
    for packet in packets:
        if packet.pts == cut.pts:
            yield packet
            break
        if packet.pts is None or packet.pts > cut.pts:  # every packet before a cut is shown before it
            raise NumberingMismatch("seeking landed after the segment's key frame")
    yield from packets


def first_frame_from(path: Source, stream_index: int, cut: Optional[Cut]) -> Optional[int]:
    """The pts of the first frame a decoder started at ``cut`` (None: the file's start) gives, of
    those shown from the cut on; None when none comes within PROBE_PACKETS packets. At a clean cut
    it is the cut's own frame."""
    with _opened(path) as container:
        stream = container.streams.video[stream_index]
        stream.codec_context.thread_count = 1  # frame threads would only delay the first frame
        codec = stream.codec_context
        try:
            probed = 0
            for packet in packets_from(container, stream, cut):
                for frame in codec.decode(packet):
                    if frame.pts is not None and (cut is None or frame.pts >= cut.pts):
                        return frame.pts
                # the packets an edit list discards (`ffmpeg -ss T -c copy` keeps those from the key
                # frame before T) are decoded as references only: they give no frame, so they do not count
                probed += not packet.is_discard
                if probed > PROBE_PACKETS:
                    return None
            for frame in codec.decode(None):
                if frame.pts is not None and (cut is None or frame.pts >= cut.pts):
                    return frame.pts
        except (av.error.FFmpegError, NumberingMismatch):
            return None
    return None
