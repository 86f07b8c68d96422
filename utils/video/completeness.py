"""Whether a read of a video was whole: what its file declares about the video's end, and what the
read found. A file whose frames end well before the end it declares (a cut download), or whose
frames the decoder flags as damaged, was read only in part (utils/video/reader.py raises VideoError
for it, or warns with keep_partial). Segments read disjoint parts; their stats add up.
"""
from dataclasses import dataclass
from typing import Optional

# A video whose frames end more than this short of the end its file declares is reported as truncated:
# the larger of a time and a number of frames at the native rate. Complete files end within a frame.
TRUNCATED_SECONDS = 1.0
TRUNCATED_FRAMES = 2


@dataclass
class DecodeStats:
    """What the truncation and damage checks need, over the source frames a read owns."""

    source_frames: int = 0
    corrupt_frames: int = 0
    first_corrupt: Optional[float] = None  # seconds
    decoded_until: Optional[float] = None  # seconds: where the last source frame ends
    decode_error: Optional[str] = None  # where and why decoding stopped early, if it did

    def add(self, seconds: Optional[float], duration: float, corrupt: bool) -> None:
        self.source_frames += 1
        if seconds is not None and (self.decoded_until is None or seconds + duration > self.decoded_until):
            self.decoded_until = seconds + duration
        if corrupt:
            self.corrupt_frames += 1
            if self.first_corrupt is None:
                self.first_corrupt = seconds

    def merged(self, other: "DecodeStats") -> "DecodeStats":
        """The stats of two reads of disjoint parts (segments) together."""
        firsts = [s for s in (self.first_corrupt, other.first_corrupt) if s is not None]
        untils = [s for s in (self.decoded_until, other.decoded_until) if s is not None]
        return DecodeStats(self.source_frames + other.source_frames, self.corrupt_frames + other.corrupt_frames,
                           min(firsts, default=None), max(untils, default=None),
                           self.decode_error or other.decode_error)


@dataclass(frozen=True)
class Completeness:
    """What a file declares about its video stream's end, to check a read of it against."""

    video_end: Optional[float]  # seconds
    frame_seconds: float  # one frame at the native rate

    def problems(self, stats: DecodeStats) -> list[str]:
        """Why the read was partial: truncated (its frames end well before the declared end; the
        decoder's error on the cut-off last packet, if any, is that), or damaged."""
        problems = []
        end, until = self.video_end, stats.decoded_until
        if end is not None and until is not None and end - until > max(
            TRUNCATED_SECONDS, TRUNCATED_FRAMES * self.frame_seconds
        ):
            problems.append(
                f"truncated: decoding ended at {until:.1f} s of the declared {end:.1f} s ({stats.source_frames} frames)"
            )
        elif stats.decode_error:  # not where the file's data ends: damage
            problems.append(stats.decode_error)
        if stats.corrupt_frames:
            where = f", the first at {stats.first_corrupt:.1f} s" if stats.first_corrupt is not None else ""
            problems.append(
                f"corrupt data: {stats.corrupt_frames} of {stats.source_frames} frames decoded with errors{where}"
            )
        return problems
