"""Truncated and damaged videos: a file cut short (a broken download) or damaged raises one line once
its frames are read, whichever way it is read; keep_partial keeps what was read, with a warning;
audio that outlasts the video is not truncation."""
import re
import subprocess

import av
import pytest

from tests.conftest import FRAME_COUNTS, SAMPLE_A, SAMPLE_B, needs_ffmpeg, truncated_mp4
from tests.decoding import decode_all
from video_features.utils.errors import PartialVideo, VideoError
from video_features.utils.video.numbering import NumberingMismatch
from video_features.utils.video.reader import VideoReader


@pytest.fixture(scope="module")
def clip_12s(tmp_path_factory):
    """12 s of testsrc2 with a sine tone, H.264 with B-frames, its index (moov) at the front."""
    path = str(tmp_path_factory.mktemp("clips") / "clip.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=12", "-f", "lavfi",
         "-i", "sine=duration=12", "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-c:a", "aac",
         "-movflags", "+faststart", path],
        check=True,
    )
    return path


def video_packets(path):
    """(byte position, size, key frame) of each video packet, in the file's order."""

    with av.open(path) as container:
        return [(p.pos, p.size, p.is_keyframe) for p in container.demux(video=0) if p.size]


READ_PATHS = {  # name: (extraction_fps, only_used)
    "native": (None, False),
    "skipping": (None, True),
    "resampled": (2, False),
}
TRUNCATED = r"^truncated: decoding ended at \d+\.\d s of the declared 12\.0 s \((\d+) frames\)$"


def read_all(path, read, keep_partial=False):
    """Frames read until the end or an error: (frames, error)."""
    fps, only_used = READ_PATHS[read]
    frames = []
    try:
        for frame in decode_all(VideoReader(path, fps), lambda i: i % 3 == 1, only_used, keep_partial=keep_partial):
            frames.append(frame)
    except (VideoError, NumberingMismatch) as error:
        return frames, error
    return frames, None


@needs_ffmpeg
@pytest.mark.parametrize("read", READ_PATHS)
@pytest.mark.parametrize("cut", ["half of the bytes", "after a packet"])
def test_a_truncated_file_raises_once_its_frames_are_read(tmp_path, clip_12s, read, cut):
    """An MP4 with its index at the front, cut short, opens and decodes fine up to the cut."""
    data = open(clip_12s, "rb").read()
    if cut == "after a packet":  # every packet whole: the frames read can be numbered before decoding
        position, size, _ = video_packets(clip_12s)[150]
        data = data[: position + size]
    else:
        data = data[: len(data) // 2]
    path = tmp_path / "cut.mp4"
    path.write_bytes(data)
    frames, error = read_all(str(path), read)
    if isinstance(error, NumberingMismatch):  # the cut-off packet can leave the last frame unnumbered: the
        assert cut == "half of the bytes"  # pipeline then decodes again, every frame
        frames, error = read_all(str(path), "native")
    assert isinstance(error, VideoError)
    decoded = int(re.match(TRUNCATED, str(error)).group(1))
    assert 100 < decoded < 200
    # the error comes at the end: every frame decoded was yielded first
    assert 4 < frames[-1].time < 8 and frames[-1].image is not None
    if READ_PATHS[read][0] is None:
        assert len(frames) == decoded
    else:
        assert len(frames) == pytest.approx(frames[-1].time * 2 + 1)


@needs_ffmpeg
def test_a_cut_off_last_packet_reads_alike_whatever_ffmpegs_thread_count(tmp_path):
    # with 1 or 2 frame threads FFmpeg reports the cut-off packet as invalid data, with more it drops
    # it: either way the file is truncated, not damaged, and keep_partial keeps what was read
    cut = truncated_mp4(tmp_path)
    outcomes = set()
    for threads in (1, 2, 3, 4):
        with pytest.raises(VideoError, match=r"^truncated: decoding ended at 3\.\d s of the declared 8\.0 s") as error:
            list(decode_all(VideoReader(str(cut), codec_threads=threads)))
        with pytest.warns(PartialVideo):
            kept = [frame.index for frame in decode_all(VideoReader(str(cut), codec_threads=threads), keep_partial=True)]
        outcomes.add((str(error.value), tuple(kept)))
    assert len(outcomes) == 1


@needs_ffmpeg
@pytest.mark.parametrize("read", READ_PATHS)
def test_keep_partial_warns_instead_of_raising(tmp_path, clip_12s, read):
    path = tmp_path / "cut.mp4"
    position, size, _ = video_packets(clip_12s)[150]
    path.write_bytes(open(clip_12s, "rb").read()[: position + size])
    frames, error = read_all(str(path), read)
    with pytest.warns(PartialVideo) as warned:
        kept, no_error = read_all(str(path), read, keep_partial=True)
    assert no_error is None and [str(w.message) for w in warned] == [f"{path}: {error} (kept: keep_partial=true)"]
    assert [(f.index, f.time) for f in kept] == [(f.index, f.time) for f in frames]


@needs_ffmpeg
@pytest.mark.parametrize("read", READ_PATHS)
def test_damaged_frames_the_decoder_reports_raise(tmp_path, clip_12s, read):
    data = bytearray(open(clip_12s, "rb").read())
    key_frames = [(position, size) for position, size, key in video_packets(clip_12s) if key]
    position, size = key_frames[2]  # the one at 4 s (-g 50)
    for byte in range(position + size // 2, position + size // 2 + 8):
        data[byte] ^= 0x55
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    frames, error = read_all(str(path), read)
    assert isinstance(error, VideoError)
    assert re.match(r"^corrupt data: \d+ of 300 frames decoded with errors, the first at 4\.0 s$", str(error))
    assert frames[-1].time == pytest.approx(11.96 if READ_PATHS[read][0] is None else 11.5)


@needs_ffmpeg
@pytest.mark.parametrize("read", READ_PATHS)
@pytest.mark.parametrize("container, audio", [("mp4", "aac"), ("mkv", "libopus"), ("ts", "aac")])
def test_audio_longer_than_the_video_is_not_truncation(tmp_path, read, container, audio):
    """4 s of video, 10 s of audio: the file lasts 10 s, its video stream 4 s."""
    path = str(tmp_path / f"clip.{container}")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-f", "lavfi",
         "-i", "sine=duration=10", "-c:v", "libx264", "-preset", "veryfast", "-c:a", audio, path],
        check=True,
    )
    reader = VideoReader(path)
    assert reader.duration == pytest.approx(4.0, abs=0.05)  # the video's, not the file's 10 s
    assert reader.estimated_frames in (100, 101)  # MPEG-TS: the video starts 0.02 s after the audio
    frames, error = read_all(path, read)
    assert error is None
    assert len(frames) == (100 if READ_PATHS[read][0] is None else 8)


@pytest.mark.parametrize("read", READ_PATHS)
@pytest.mark.parametrize("path", [SAMPLE_A, SAMPLE_B])
def test_the_sample_videos_are_read_in_full(path, read):
    reader = VideoReader(path)
    assert reader.duration == pytest.approx(FRAME_COUNTS[path] / reader.fps, abs=1e-3)
    frames, error = read_all(path, read)
    assert error is None
