"""What the main thread knows of one video in work (its segments' windows put back in order, the
checks where segments meet, its features so far), and the result it gives back."""
import time
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from video_features.utils.errors import PartialVideo, VideoFeaturesWarning
from video_features.utils.frames.windows import Window, WindowAssembler
from video_features.utils.video.completeness import Completeness, DecodeStats
from video_features.utils.video.protocol import FewerSegments, SlotFilled
from video_features.utils.video.remote import redact


@dataclass
class VideoResult:
    path: str
    outputs: Optional[dict[str, np.ndarray]] = None  # None when skipped or failed
    logits: Optional[np.ndarray] = None  # (windows, classes), or (windows, crops, classes); with keep_logits
    error: Optional[str] = None
    skipped: Optional[Enum] = None  # why the video was not read, as the caller's work said
    seconds: Optional[float] = None  # from the start of its decoding to its result
    segments: Optional[int] = None  # the parts that decoding processes decoded at once
    fewer_segments: Optional[FewerSegments] = None  # why fewer than decode_workers, where they were
    decoded_whole: Optional[str] = None  # why it was decoded again in one piece, if it was


@dataclass
class VideoInFlight:
    """A video whose segments are being decoded and whose windows run: what the main thread knows of it."""

    path: str
    attempt: int
    fps: float
    completeness: Completeness
    assemblers: dict[int, WindowAssembler]  # of the segments still decoding
    progress: Optional[tqdm]
    segments: int = 1
    boundaries: frozenset = frozenset()  # the frames two segments both decode, to be compared
    digests: dict[int, set] = field(default_factory=dict)  # frame -> the digests of its decodes so far
    features: dict[int, np.ndarray] = field(default_factory=dict)  # by window index
    logits: dict[int, np.ndarray] = field(default_factory=dict)
    times: dict[int, tuple[float, float]] = field(default_factory=dict)
    stats: DecodeStats = field(default_factory=DecodeStats)
    windows_pending: int = 0  # cut but not yet through the network
    frame_count: int = 0
    error: Optional[str] = None
    decoded_whole: Optional[str] = None  # why an earlier attempt was given up for a decode in one piece
    expected_windows: Optional[int] = None  # from the duration the file declares
    fewer_segments: Optional[FewerSegments] = None
    started: float = field(default_factory=time.monotonic)

    @property
    def windows_done(self) -> int:
        return len(self.features)

    def add(self, message: SlotFilled, preprocessed: Optional[torch.Tensor]) -> list[Window]:
        """Takes a slot's preprocessed images (in the order of the message's frames that have pixels);
        returns the windows they complete."""
        assembler = self.assemblers[message.segment]
        windows, row = [], 0
        frames = zip(message.indices.tolist(), message.times.tolist(), message.has_image.tolist())
        for index, time_, has_image in frames:
            frame = None
            if has_image:
                frame, row = preprocessed[row], row + 1
            window = assembler.add(index, time_, frame)
            self.frame_count = max(self.frame_count, index + 1)
            if window is not None:
                windows.append(window)
        self.windows_pending += len(windows)
        return windows

    def mismatch(self, digests: dict[int, bytes]) -> Optional[str]:
        """Why the segments do not give the frames of one decode where they meet, as a segment's digests
        come in (utils/video/segments.py); None while they agree."""
        for frame, digest in digests.items():
            self.digests.setdefault(frame, set()).add(digest)
            if len(self.digests[frame]) > 1:
                return f"segments disagree: frame {frame} decoded from a key frame differs from its decode before it"
        if len(self.assemblers) == 1:  # the last segment: every frame they share must have come twice
            for frame in sorted(self.boundaries):
                if frame not in self.digests:
                    return f"segments disagree: frame {frame} was not decoded where two segments meet"
        return None

    def segment_done(self, number: int, stats: DecodeStats, keep_partial: bool) -> Optional[Window]:
        """A segment is decoded; after the last, the checks of the whole video, and the padded
        window of a video shorter than one window."""
        assembler = self.assemblers.pop(number)
        self.stats = self.stats.merged(stats)
        if self.assemblers:
            return None
        problems = self.completeness.problems(self.stats)
        if problems and not keep_partial:
            self.error = "; ".join(problems)
            return None
        if problems:
            warnings.warn(f"{redact(self.path)}: {'; '.join(problems)} (kept: keep_partial=true)", PartialVideo)
        padded = assembler.finish()
        if padded is not None:
            warnings.warn(
                f"{redact(self.path)}: {self.frame_count} frame{'s' * (self.frame_count != 1)} is shorter than one "
                f"window of {assembler.plan.stack}; the last frame is repeated to fill it",
                VideoFeaturesWarning,
            )
            self.windows_pending += 1
        return padded

    def record(self, window: Window, features: np.ndarray, logits: Optional[np.ndarray]) -> None:
        # Copies, not views of the batch's output: a view keeps torch's small output block alive, and
        # that block pins the freed window buffers around it in glibc's heap (+2 buffers per window:
        # 5 GB over a 20-minute video before this copy; benchmarks/ measures it)
        self.features[window.index] = features.copy()
        if logits is not None:
            self.logits[window.index] = logits.copy()
        self.times[window.index] = (window.start * 1000.0, window.end * 1000.0)
        self.windows_pending -= 1
        if self.progress is not None:
            self.progress.update(1)

    @property
    def done(self) -> bool:
        return self.error is not None or (not self.assemblers and not self.windows_pending)

    def result(self, feature_type: str) -> VideoResult:
        self.close()
        seconds = time.monotonic() - self.started
        order = sorted(self.features)
        if self.error is None and order != list(range(len(order))):
            self.error = f"internal error: windows {order[0]}..{order[-1]} are not contiguous"
        if self.error is not None:
            return VideoResult(self.path, error=self.error, seconds=seconds, segments=self.segments,
                               fewer_segments=self.fewer_segments, decoded_whole=self.decoded_whole)
        outputs = {
            feature_type: np.stack([self.features[i] for i in order]).astype(np.float32),
            "timestamps_ms": np.array([self.times[i] for i in order], dtype=np.float64),
            "fps": np.array(self.fps, dtype=np.float64),
        }
        logits = np.stack([self.logits[i] for i in order]) if self.logits else None
        return VideoResult(self.path, outputs=outputs, logits=logits, seconds=seconds, segments=self.segments,
                           fewer_segments=self.fewer_segments, decoded_whole=self.decoded_whole)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
