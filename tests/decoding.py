"""Decoding a whole video in the test process, through the reader the decoding processes use."""
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import av
import numpy as np

from video_features.utils.errors import PartialVideo, VideoError
from video_features.utils.video.reader import VideoReader
from video_features.utils.video.rgb import rgb_view


@dataclass
class Frame:
    index: int  # position in the (resampled) frame sequence
    time: float  # presentation time in seconds, from the start of the file
    image: Optional[np.ndarray]  # (H, W, 3) RGB uint8, or None for a frame no window uses


def decode_all(reader: VideoReader, wanted: Callable[[int], bool] = lambda index: True, only_used: bool = False,
           keep_partial: bool = False) -> Iterator[Frame]:
    """Every frame of the whole video in order, converted to RGB where ``wanted(index)`` (and the
    last); then, as the pipeline does, a truncated or damaged video raises VideoError (with
    ``keep_partial``, a PartialVideo warning)."""
    rgb = av.video.reformatter.VideoReformatter()
    for decoded in reader.decoded(wanted, only_used):
        image = None
        if decoded.wanted and decoded.frame is not None:
            image = np.ascontiguousarray(rgb_view(rgb, decoded.frame))
        yield Frame(decoded.index, decoded.time, image)
    problems = reader.completeness.problems(reader.stats)
    if problems and not keep_partial:
        raise VideoError("; ".join(problems))
    if problems:
        warnings.warn(f"{reader.path}: {'; '.join(problems)} (kept: keep_partial=true)", PartialVideo, stacklevel=2)
