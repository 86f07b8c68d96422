import shutil
import subprocess

import av
import numpy as np
import pytest

from tests.conftest import FRAME_COUNTS, SAMPLE_A, SAMPLE_B, needs_ffmpeg
from tests.decoding import decode_all
from video_features.utils.errors import VideoError
from video_features.utils.frames.windows import WindowPlan
from video_features.utils.video.completeness import DecodeStats
from video_features.utils.video.reader import VideoReader
from video_features.utils.video.rgb import rgb_view
from video_features.utils.video.segments import split


def ffmpeg_frames(path, fps, size=(64, 36)):
    """The frames `ffmpeg -vf fps=fps=X` keeps, scaled down to compare content cheaply."""
    w, h = size
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-vf", f"fps=fps={fps},scale={w}:{h}:flags=area",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w)


def our_frames(path, fps, size=(64, 36)):
    import av

    frames = list(decode_all(VideoReader(path, fps)))
    small = []
    for frame in frames:
        image = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        small.append(image.reformat(width=size[0], height=size[1], format="gray", interpolation="AREA").to_ndarray())
    return frames, np.stack(small)


@needs_ffmpeg
@pytest.mark.parametrize("path", [SAMPLE_A, SAMPLE_B])
@pytest.mark.parametrize("fps", [1, 2.5, 5, 7, 12.5, 24, 29.97, 50])
def test_resampling_keeps_the_frames_ffmpeg_keeps(path, fps):
    theirs = ffmpeg_frames(path, fps)
    frames, ours = our_frames(path, fps)
    assert len(frames) == len(theirs)
    # the same source frame each time: a neighbouring frame would differ by far more
    difference = np.abs(ours.astype(int) - theirs.astype(int)).mean(axis=(1, 2))
    assert difference.max() < 1.5
    assert [f.index for f in frames] == list(range(len(frames)))
    np.testing.assert_allclose([f.time for f in frames], np.arange(len(frames)) / fps, atol=1e-9)


@pytest.mark.parametrize("path", [SAMPLE_A, SAMPLE_B])
def test_native_rate_gives_every_frame_with_its_timestamp(path):
    reader = VideoReader(path)
    frames = list(decode_all(reader, wanted=lambda i: i % 10 == 0))
    assert len(frames) == FRAME_COUNTS[path]
    assert reader.fps == pytest.approx({SAMPLE_A: 25.0, SAMPLE_B: 30000 / 1001}[path])
    np.testing.assert_allclose([f.time for f in frames], np.arange(len(frames)) / reader.fps, atol=1e-3)
    # only wanted frames are converted to RGB, and the last one always is (for padding)
    assert [f.index for f in frames if f.image is not None] == [i for i in range(len(frames)) if i % 10 == 0] + (
        [len(frames) - 1] if (len(frames) - 1) % 10 else []
    )


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "my videos – été"
    folder.mkdir()
    path = folder / "clip nº 1 (copy).mp4"
    shutil.copy(SAMPLE_B, path)
    assert len(list(decode_all(VideoReader(str(path)), lambda i: False))) == FRAME_COUNTS[SAMPLE_B]


@needs_ffmpeg
@pytest.mark.parametrize("container, codec", [("mkv", "copy"), ("webm", "libvpx-vp9"), ("avi", "mpeg4")])
def test_other_containers_and_codecs(tmp_path, container, codec):
    path = tmp_path / f"clip.{container}"
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-t", "1", "-c:v", codec, "-an", str(path)], check=True)
    frames = list(decode_all(VideoReader(str(path))))
    assert 29 <= len(frames) <= 32  # stream copy cuts at packets, so a frame or two more
    assert frames[0].image.shape == (270, 480, 3)


@needs_ffmpeg
def test_a_file_that_starts_late_is_resampled_and_timed_as_ffmpeg_does(tmp_path):
    path = str(tmp_path / "late.mkv")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-t", "2", "-c", "copy", "-output_ts_offset", "2.13", path],
        check=True,
    )
    theirs = ffmpeg_frames(path, 5)
    frames, ours = our_frames(path, 5)
    assert len(frames) == len(theirs)
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean(axis=(1, 2)).max() < 1.5
    assert frames[0].time == 0.0 and frames[1].time == pytest.approx(0.2)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        (b"this is not a video", "cannot open: invalid data"),
        ("truncated", "cannot open"),
    ],
)
def test_unreadable_files_raise_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content == "truncated":
        path.write_bytes(open(SAMPLE_A, "rb").read()[:200_000])  # the index (moov) is at the end
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as error:
        list(decode_all(VideoReader(str(path))))
    assert "\n" not in str(error.value)


@needs_ffmpeg
def test_a_file_without_a_video_stream(tmp_path):
    path = tmp_path / "audio.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_A, "-vn", "-c:a", "copy", str(path)], check=True)
    with pytest.raises(VideoError, match="no video stream"):
        VideoReader(str(path))


def encoded(tmp_path, name, output_options, input_options=()):
    """SAMPLE_B (3 s of it) written by ffmpeg with these options; ``name`` gives the container."""
    path = str(tmp_path / name)
    subprocess.run(
        ["ffmpeg", "-v", "error", *input_options, "-i", SAMPLE_B, "-t", "3", *output_options, "-an", path], check=True
    )
    return path


SKIP_CASES = {  # name: (file name, ffmpeg input options, ffmpeg output options)
    "x264 B-pyramid": ("b.mp4", [], ["-c:v", "libx264", "-bf", "3"]),
    "x264 8 B-frames": ("deep.mp4", [], ["-c:v", "libx264", "-bf", "8", "-x264-params", "b-pyramid=normal:b-adapt=0"]),
    "no B-frames": ("p.mp4", [], ["-c:v", "libx264", "-bf", "0"]),
    "hevc": ("h.mp4", [], ["-c:v", "libx265", "-x265-params", "log-level=error"]),
    # a stream-copy cut between key frames: an MP4 edit list whose first packets are decoded, not shown
    "edit list": ("cut.mp4", ["-ss", "0.5"], ["-c", "copy"]),
    "variable rate": ("vfr.mp4", [], ["-c:v", "libx264", "-vf", "setpts='PTS+gte(N,30)*0.3/TB'", "-fps_mode", "vfr"]),
}


@needs_ffmpeg
@pytest.mark.parametrize("case", SKIP_CASES)
def test_skipping_unwanted_frames_gives_the_same_frames(tmp_path, case):
    name, input_options, output_options = SKIP_CASES[case]
    path = encoded(tmp_path, name, output_options, input_options)
    wanted = lambda index: index % 3 == 1  # noqa: E731
    plain = list(decode_all(VideoReader(path), wanted))
    reader = VideoReader(path)
    skipping = list(decode_all(reader, wanted, only_used=True))
    assert [(f.index, f.time) for f in skipping] == [(f.index, f.time) for f in plain]
    for ours, theirs in zip(skipping, plain):
        assert (ours.image is None) == (theirs.image is None)
        if ours.image is not None:
            np.testing.assert_array_equal(ours.image, theirs.image)
    if case == "no B-frames":
        assert reader.undecoded_frames == 0  # every frame is a reference for the next
    else:
        assert reader.undecoded_frames > len(plain) // 6


@needs_ffmpeg
def test_a_stream_without_timestamps_has_no_index_and_is_decoded_whole(tmp_path):
    path = encoded(tmp_path, "raw.h264", ["-c:v", "libx264", "-f", "h264"])  # no timestamps to number packets by
    reader = VideoReader(path)
    assert reader.index() is None
    wanted = lambda index: index % 3 == 1  # noqa: E731
    plain = [(f.index, f.time) for f in decode_all(VideoReader(path), wanted)]
    assert [(f.index, f.time) for f in decode_all(reader, wanted, only_used=True)] == plain and len(plain) > 20
    assert reader.undecoded_frames == 0


@needs_ffmpeg
def test_a_file_cut_inside_an_open_gop_is_indexed_from_its_first_decodable_frame(tmp_path):
    # the file starts with leading frames that reference frames cut away: the decoder drops them, so
    # the index leaves them out, and skipping numbers the frames as a decode of every frame does
    source = encoded(tmp_path, "open.mkv", ["-c:v", "libx264", "-x264-params", "open-gop=1:keyint=20"])
    path = str(tmp_path / "cut.mkv")
    subprocess.run(["ffmpeg", "-v", "error", "-i", source, "-ss", "0.7", "-c", "copy", path], check=True)
    with av.open(path) as container:
        packets = sum(1 for packet in container.demux(video=0) if packet.size)
    reader = VideoReader(path)
    every = [(f.index, f.time) for f in decode_all(VideoReader(path))]
    assert reader.index().frames == len(every) < packets  # the dropped frames are in the file, not the index
    wanted = lambda index: index % 3 == 1  # noqa: E731
    skipping = list(decode_all(reader, wanted, only_used=True))
    assert [(f.index, f.time) for f in skipping] == every and reader.undecoded_frames > 0


@needs_ffmpeg
@pytest.mark.parametrize("rotate", ["90", "180", "270", "-90"])
def test_rotated_videos_come_out_upright_as_ffmpeg_shows_them(tmp_path, rotate):
    """A display matrix (phone videos) turns the frames as the ffmpeg program does, on every path."""
    import av

    rotated, upright = str(tmp_path / "rotated.mp4"), str(tmp_path / "upright.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-t", "1", "-an", "-c", "copy",
                    "-metadata:s:v:0", f"rotate={rotate}", rotated], check=True)
    # ffmpeg turns the frames upright when it re-encodes (autorotate); -qp 0 keeps them exact
    subprocess.run(["ffmpeg", "-v", "error", "-i", rotated, "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p",
                    "-fps_mode", "passthrough", upright], check=True)
    with av.open(rotated) as container:
        assert next(container.decode(video=0)).rotation % 360 == int(rotate) % 360
    with av.open(upright) as container:
        assert next(container.decode(video=0)).rotation == 0
    shape = (270, 480, 3) if rotate == "180" else (480, 270, 3)
    wanted = lambda index: index % 3 == 1  # noqa: E731
    for fps, only_used in [(None, False), (None, True), (5, False)]:
        ours = list(decode_all(VideoReader(rotated, fps), wanted, only_used))
        theirs = list(decode_all(VideoReader(upright, fps), wanted))
        assert [(f.index, f.time) for f in ours] == [(f.index, f.time) for f in theirs]
        assert sum(f.image is not None for f in ours) >= 3
        for mine, reference in zip(ours, theirs):
            assert (mine.image is None) == (reference.image is None)
            if mine.image is not None:
                assert mine.image.shape == shape and mine.image.flags.c_contiguous
                np.testing.assert_array_equal(mine.image, reference.image)  # measured: identical


SEGMENT_CASES = {  # name: (file name, ffmpeg input options, ffmpeg output options); a key frame every 15 frames
    "x264 B-pyramid": ("b.mp4", [], ["-c:v", "libx264", "-bf", "3", "-g", "15"]),
    "x264 open GOP": ("open.mp4", [], ["-c:v", "libx264", "-bf", "3", "-x264-params", "open-gop=1:keyint=15"]),
    "hevc": ("h.mp4", [], ["-c:v", "libx265", "-x265-params", "log-level=error:keyint=15"]),
    "edit list": ("cut.mp4", ["-ss", "0.5"], ["-c:v", "libx264", "-g", "15"]),
    "variable rate": ("vfr.mp4", [], ["-c:v", "libx264", "-g", "15", "-vf", "setpts='PTS+gte(N,30)*0.3/TB'",
                                      "-fps_mode", "vfr"]),
    "mpeg-4 part 2 in avi": ("m.avi", [], ["-c:v", "mpeg4", "-g", "15"]),
}
SEGMENT_READS = {  # name: (extraction_fps, only_used, plan)
    "every frame": (None, False, WindowPlan(8, 8, tuple(range(8)))),
    "sparse, skipping": (None, True, WindowPlan(12, 10, (0, 5, 11))),
    "resampled": (7, False, WindowPlan(4, 3, (0, 1, 2, 3))),
}


def segment_frames(path, fps, only_used, plan, segment):
    """(index, time, image) of the frames a segment's windows see, and the stats the read owned."""
    import av

    reader, rgb = VideoReader(path, fps), av.video.reformatter.VideoReformatter()
    wanted = lambda index: plan.uses(index, segment.first_window, segment.end_window)  # noqa: E731
    frames = []
    for decoded in reader.decoded(wanted, only_used, segment):
        if decoded.wanted and decoded.frame is not None:
            frames.append((decoded.index, decoded.time, np.ascontiguousarray(rgb_view(rgb, decoded.frame))))
    return frames, reader.stats


@needs_ffmpeg
@pytest.mark.parametrize("read", SEGMENT_READS)
@pytest.mark.parametrize("case", SEGMENT_CASES)
def test_segments_give_the_frames_of_the_whole_video(tmp_path, case, read):
    name, input_options, output_options = SEGMENT_CASES[case]
    path = encoded(tmp_path, name, output_options, input_options)
    fps, only_used, plan = SEGMENT_READS[read]
    reader = VideoReader(path, fps)
    segments = split(reader.index(), plan, reader.time_base, reader.shift, fps, max_segments=4, min_seconds=0.5)
    assert len(segments) >= 3 and segments[-1].last and not segments[1].cut.at_start
    whole_read = {f.index: f for f in decode_all(reader, plan.uses)}
    stats = DecodeStats()
    seen = set()
    for segment in segments:
        frames, owned = segment_frames(path, fps, only_used, plan, segment)
        stats = stats.merged(owned)
        for index, time, image in frames:
            if not plan.uses(index, segment.first_window, segment.end_window):
                continue
            seen.add(index)
            assert time == whole_read[index].time, (segment.number, index)
            np.testing.assert_array_equal(image, whole_read[index].image, err_msg=f"segment {segment.number}, frame {index}")
    assert seen == {index for index in whole_read if plan.uses(index)}  # every frame a window uses, once
    assert stats.source_frames == reader.stats.source_frames
    assert stats.decoded_until == pytest.approx(reader.stats.decoded_until, abs=1e-9)
