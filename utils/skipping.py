"""Decoding that does not decode the frames no window uses, where no other frame needs them.

FFmpeg's ``skip_frame=nonref`` drops the H.264/HEVC frames that no other frame references. It is
set packet by packet, for the frames no window uses. Whether a frame is used depends on its
position in presentation order, which is known before decoding from the packets' timestamps: the
number of packets with an earlier pts, among those already sent to the decoder and the next
REORDER_PACKETS. Packets reach the decoder in the file's order, as without skipping, so the
decoded frames are the same, and skipped frames keep their index and time. Whatever breaks that
numbering (no timestamps, equal ones, reordering deeper than the look-ahead, a frame the decoder
drops or adds) raises SkipMismatch: the caller decodes the video again without skipping.
"""
import bisect
import collections
import itertools
from typing import Callable

# Codecs whose FFmpeg decoders honour skip_frame=nonref (tests/test_video.py checks both).
SKIPPABLE_CODECS = frozenset({"h264", "hevc"})
# Packets read ahead of the decoder to number frames in presentation order: more than the deepest
# frame reordering H.264 and HEVC allow (16 frames).
REORDER_PACKETS = 32


class SkipMismatch(Exception):
    """Frames could not be numbered before decoding them: decode the video again without skipping."""


class SkippingDecoder:
    """(seconds, frame) in presentation order, with frame None for the frames skipped."""

    def __init__(self, container, stream, start_seconds: float, wanted: Callable[[int], bool],
                 on_frame: Callable[[float, float, bool], None]):
        """``on_frame(seconds, duration, corrupt)`` is told of every frame, skipped ones too."""
        self.container, self.stream, self.wanted, self.on_frame = container, stream, wanted, on_frame
        self.codec = stream.codec_context
        self.time_base = stream.time_base
        self.shift = round(start_seconds / stream.time_base)  # as the reader shifts frame.pts
        self.sent = []  # sorted pts of the frames' packets sent to the decoder (edit-list discards excluded)
        self.announced = {}  # position -> (pts, skipped) of the frames not yet yielded
        self.positions = {}  # pts -> position of the same
        self.next_position = 0
        self.skipped = 0

    def frames(self):
        packets = self._demuxed()
        ahead = collections.deque(itertools.islice(packets, REORDER_PACKETS))
        while ahead:
            packet = ahead.popleft()
            ahead.extend(itertools.islice(packets, 1))
            self.codec.skip_frame = "NONREF" if self._announce(packet, ahead) else "DEFAULT"
            yield from self._release(self.codec.decode(packet))
        self.codec.skip_frame = "DEFAULT"
        yield from self._release(self.codec.decode(None))
        yield from self._up_to(len(self.sent))

    def _seconds(self, pts) -> float:
        return float((pts - self.shift) * self.time_base)

    def _demuxed(self):
        for packet in self.container.demux(self.stream):
            if not packet.size:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None or (not packet.is_discard and self.sent and packet.pts <= self.sent[-1]):
                raise SkipMismatch("packet timestamps do not give the presentation order")
            yield packet

    def _announce(self, packet, ahead) -> bool:
        """Numbers the packet's frame; whether it may be skipped."""
        if packet.is_discard:
            return True  # frames an edit list discards are never shown: skip them where possible
        sent = self.sent
        earlier = bisect.bisect_left(sent, packet.pts)
        if sent[earlier:earlier + 1] == [packet.pts]:
            raise SkipMismatch("packet timestamps do not give the presentation order")
        later = [other.pts for other in ahead if not other.is_discard]
        position = earlier + sum(pts < packet.pts for pts in later)
        is_last = len(ahead) < REORDER_PACKETS and position == len(sent) + len(later)
        skip = not (self.wanted(position) or is_last)
        bisect.insort(sent, packet.pts)
        self.announced[position], self.positions[packet.pts] = (packet.pts, skip), position
        return skip

    def _up_to(self, position: int):
        """The skipped frames from the next position up to ``position``, which is decoded."""
        for missing in range(self.next_position, position):
            pts, skipped = self.announced.pop(missing, (None, False))
            if not skipped:
                raise SkipMismatch(f"frame {missing} was not decoded")
            del self.positions[pts]
            self.skipped += 1
            time = self._seconds(pts)
            self.on_frame(time, 0.0, False)
            yield time, None
        self.next_position = position + 1

    def _release(self, frames):
        for frame in frames:
            position = self.positions.pop(frame.pts, None)
            if position is None or position < self.next_position:
                raise SkipMismatch("the decoder gave a frame out of the packets' order")
            del self.announced[position]
            yield from self._up_to(position)
            time = self._seconds(frame.pts)
            self.on_frame(time, frame.duration * float(self.time_base), frame.is_corrupt)
            yield time, frame
