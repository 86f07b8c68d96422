"""Decoded frames as RGB images, upright as the ffmpeg program shows them."""
import numpy as np


def _quarter_turns(degrees: float) -> int:
    """Counter-clockwise quarter turns (np.rot90's k) that show a frame as the ffmpeg program does.

    ``degrees`` is PyAV's ``VideoFrame.rotation``: the display matrix's angle, counter-clockwise
    (90 for a file tagged ``-metadata:s:v:0 rotate=90`` by the ffmpeg program; tests/test_video.py
    checks the direction against ffmpeg's autorotated re-encode). Angles that are not within a
    degree of a multiple of 90 are left as stored (ffmpeg would rotate those with its rotate filter);
    the flip of a mirrored display matrix is not applied.
    """
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) <= 1 else 0


def rgb_view(reformatter, frame) -> np.ndarray:
    """The frame as an (H, W, 3) RGB view, turned upright as the ffmpeg program shows it (its
    autorotate); a view of the converted frame's own memory, not a copy."""
    # one thread: by default swscale wakes a thread per core for every frame, and on a CPU those cores
    # are running the network; per-pixel conversion, so the pixels are the same
    converted = reformatter.reformat(frame, format="rgb24", threads=1)
    plane = converted.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(converted.height, plane.line_size)
    image = rows[:, : 3 * converted.width].reshape(converted.height, converted.width, 3)
    turns = _quarter_turns(frame.rotation) if frame.rotation else 0
    return np.rot90(image, turns) if turns else image
