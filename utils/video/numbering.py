"""Decoding with every frame numbered by the index (utils/video/frame_index.py) before it is decoded:
from any cut, and without decoding the frames no window uses where no other frame needs them.

FFmpeg's ``skip_frame=nonref`` drops the H.264/HEVC frames that no other frame references. It is
set packet by packet, for the frames no window uses: a packet's frame has the position of its
timestamp in the index. Packets reach the decoder in the file's order, as without skipping, so the
decoded frames are the same, and skipped frames keep their position and time. The frames that
come out are checked against the index; whatever breaks it (a frame the decoder drops or adds, or
gives out of order) raises NumberingMismatch: the caller decodes the whole video again, in one piece
and numbering frames in the decoder's order.
"""
from fractions import Fraction
from typing import Callable, Iterator, Optional

import numpy as np

# Codecs whose FFmpeg decoders honour skip_frame=nonref (tests/test_video.py checks both).
NONREF_CODECS = frozenset({"h264", "hevc"})


class NumberingMismatch(Exception):
    """Frames could not be numbered before decoding them: decode the video again in one piece."""


class IndexedDecoder:
    """(position, seconds, frame or None) of the frames [first, until) in presentation order, with
    frame None for the frames skipped; frames before ``first`` are decoded only as references."""

    def __init__(self, container, stream, pts: np.ndarray, base: int, first: int, until: Optional[int],
                 shift: int, wanted: Callable[[int], bool], only_used: bool, keep_last: bool):
        """``pts``: the index's timestamps of positions base, base + 1, ...: from the position of the
        cut the container is at, to ``until`` or the end of the video. ``keep_last``: never skip the
        last of them (the video's last frame, which pads a video shorter than one window)."""
        self.container, self.stream, self.codec = container, stream, stream.codec_context
        self.pts, self.base, self.first = pts, base, first
        self.end = base + len(pts) if until is None else until
        self.position_of = {int(p): base + i for i, p in enumerate(pts)}
        self.time_base, self.shift = Fraction(stream.time_base), shift
        self.wanted, self.keep_last = wanted, keep_last
        self.skipping = only_used and self.codec.name in NONREF_CODECS
        self.sent_skipping: set[int] = set()  # positions whose packets were sent with skip_frame=nonref
        self.next_position = base
        self.skipped = 0

    def seconds(self, position: int) -> float:
        return float((int(self.pts[position - self.base]) - self.shift) * self.time_base)

    def frames(self, packets) -> Iterator[tuple[int, float, object]]:
        """Decodes ``packets`` (the stream's, from the cut on) up to the last frame before ``until``."""
        for packet in packets:
            self.codec.skip_frame = "NONREF" if self._may_skip(packet) else "DEFAULT"
            yield from self._release(self.codec.decode(packet))
            if self.next_position >= self.end:
                return
        self.codec.skip_frame = "DEFAULT"
        yield from self._release(self.codec.decode(None))
        yield from self._up_to(self.end)

    def _may_skip(self, packet) -> bool:
        """Whether the packet's frame is one no window uses (an edit list's discarded frames included)."""
        if not self.skipping:
            return False
        if packet.is_discard:
            return True  # never shown
        position = self.position_of.get(packet.pts)
        if position is None:  # shown before the cut (an open GOP's leading frame), or after ``until``
            return True
        last = position == self.base + len(self.pts) - 1
        if self.wanted(position) or (last and self.keep_last):
            return False
        self.sent_skipping.add(position)
        return True

    def _up_to(self, position: int) -> Iterator[tuple[int, float, None]]:
        """The skipped frames from the next position up to ``position`` (which is decoded, or the end)."""
        for missing in range(self.next_position, min(position, self.end)):
            if missing not in self.sent_skipping:
                raise NumberingMismatch(f"frame {missing} was not decoded")
            self.skipped += 1
            if missing >= self.first:
                yield missing, self.seconds(missing), None
        self.next_position = max(self.next_position, position)

    def _release(self, frames) -> Iterator[tuple[int, float, object]]:
        for frame in frames:
            position = self.position_of.get(frame.pts)
            if position is None:
                if frame.pts is not None and (frame.pts < self.pts[0] or frame.pts > self.pts[-1]):
                    continue  # shown before the cut, or after the last frame wanted
                raise NumberingMismatch("the decoder gave a frame the index does not know")
            if position < self.next_position:
                raise NumberingMismatch("the decoder gave a frame out of the packets' order")
            yield from self._up_to(position)
            if position >= self.end:
                return
            self.next_position = position + 1
            if position >= self.first:
                yield position, self.seconds(position), frame
