"""video_features' way of resampling: the ffmpeg program re-encodes the video at the new rate."""
import hashlib
import os

from video_features.utils.errors import VideoError


def reencode_to_fps(path: str, fps: float, tmp_dir: str) -> str:
    """video_features' method: re-encode with the ffmpeg CLI's fps filter into ``tmp_dir``.

    Lossy (a second H.264 encode), so features differ slightly from the in-process filter.
    """
    import ffmpeg  # ffmpeg-python; only this method needs it

    os.makedirs(tmp_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]  # same stems, other folders
    out = os.path.join(tmp_dir, f"{stem}_{tag}_new_fps.mp4")
    try:
        (
            ffmpeg.input(path)
            .output(out, an=None, **{"filter:v": f"fps=fps={fps}"})
            .run(quiet=True, overwrite_output=True)
        )
    except BaseException as error:  # also a stop of the decoding process: no partial copy is left
        if os.path.exists(out):
            os.remove(out)
        if not isinstance(error, ffmpeg.Error):
            raise
        lines = error.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"ffmpeg re-encoding failed: {lines[-1] if lines else 'no message'}") from error
    return out
