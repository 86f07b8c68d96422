"""Segments on awkward streams: a video decoded by 1, 2 or 3 processes gives the same network input,
features and timestamps, at the native rate and resampled, or it is decoded again in one piece and
the run log says why.

The network here returns its input clips as features, so that equal features mean equal
preprocessed pixels, window by window: a shifted frame or a damaged one cannot hide in an average.
"""
import dataclasses
import json
import re
import subprocess

import av
import numpy as np
import pytest
import torch

from tests.conftest import make_extractor, needs_ffmpeg, run_cli
from video_features.utils.network.runner import Inference
from video_features.utils.pipeline.pipeline import Pipeline


class Pixels(torch.nn.Module):
    """Features: the clips themselves; logits: one number per clip."""

    def forward(self, clips):
        return clips.flatten(1), clips.flatten(1)[:, :1]


def extract(path, workers, min_segment_seconds=None, **options):
    """(outputs, segments, why it was decoded again in one piece) of one video through the pipeline."""
    extractor = make_extractor(**options)
    settings = extractor.pipeline.settings
    if min_segment_seconds is not None:
        settings = dataclasses.replace(settings, min_segment_seconds=min_segment_seconds)
    pipeline = Pipeline(Inference(Pixels(), torch.device("cpu")), settings, "pixels", batch_size=4,
                        decode_workers=workers)
    (result,) = pipeline.extract_many([path])
    assert result.error is None, result.error
    return result.outputs, result.segments, result.decoded_whole


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def lavfi_testsrc(seconds, rate=25, size="320x240"):
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def intra_refresh(folder):
    """x264 with intra refresh: no IDR frame after the first; its key frames are recovery points."""
    path = folder / "intra_refresh.mp4"
    ffmpeg(*lavfi_testsrc(60), "-c:v", "libx264", "-bf", "3", "-x264-params", "intra-refresh=1:keyint=50", path)
    return path


def hevc_open_gop_cut_into_ts(folder):
    """Open-GOP HEVC cut without re-encoding into MPEG-TS: it starts with leading frames the decoder drops."""
    ffmpeg(*lavfi_testsrc(65), "-c:v", "libx265", "-x265-params", "keyint=100:log-level=error", folder / "hevc.mkv")
    ffmpeg("-ss", "4.5", "-i", folder / "hevc.mkv", "-c", "copy", folder / "hevc_cut.ts")
    return folder / "hevc_cut.ts"


def mpeg2_open_gop_cut_into_ts(folder):
    ffmpeg(*lavfi_testsrc(65), "-c:v", "mpeg2video", "-q:v", "4", "-bf", "2", "-g", "15", folder / "mpeg2.ts")
    ffmpeg("-ss", "5.3", "-i", folder / "mpeg2.ts", "-c", "copy", folder / "mpeg2_cut.ts")
    return folder / "mpeg2_cut.ts"


REPRODUCTIONS = {  # the three kinds of stream that once gave other features in segments
    "x264 intra refresh": intra_refresh,
    "open-GOP HEVC cut into MPEG-TS": hevc_open_gop_cut_into_ts,
    "open-GOP MPEG-2 cut into MPEG-TS": mpeg2_open_gop_cut_into_ts,
}


def h264_open_gop_cut_into_ts(folder):
    ffmpeg(*lavfi_testsrc(14), "-c:v", "libx264", "-bf", "3", "-x264-params", "open-gop=1:keyint=30", folder / "open.mkv")
    ffmpeg("-ss", "1.3", "-i", folder / "open.mkv", "-c", "copy", folder / "open_cut.ts")
    return folder / "open_cut.ts"


def variable_rate(folder):
    ffmpeg(*lavfi_testsrc(12), "-c:v", "libx264", "-g", "25", "-vf", "setpts='PTS+gte(N,60)*0.37/TB+gte(N,150)*0.21/TB'",
           "-fps_mode", "vfr", folder / "vfr.mp4")
    return folder / "vfr.mp4"


def edit_list(folder):
    """A stream-copy cut between key frames: an MP4 edit list whose first packets are decoded, not shown."""
    ffmpeg(*lavfi_testsrc(14), "-c:v", "libx264", "-g", "25", "-bf", "2", folder / "whole.mp4")
    ffmpeg("-ss", "0.7", "-i", folder / "whole.mp4", "-c", "copy", folder / "edit_list.mp4")
    return folder / "edit_list.mp4"


def fragmented_mp4(folder):
    ffmpeg(*lavfi_testsrc(12), "-c:v", "libx264", "-g", "25", "-movflags", "frag_keyframe+empty_moov",
           folder / "fragmented.mp4")
    return folder / "fragmented.mp4"


def mkv_without_cues(folder):
    ffmpeg(*lavfi_testsrc(12), "-c:v", "libx264", "-g", "25", "-cues_to_front", "0", "-reserve_index_space", "0",
           folder / "cued.mkv")
    ffmpeg("-i", folder / "cued.mkv", "-c", "copy", "-write_crc32", "0", "-f", "matroska", "-live", "1",
           folder / "no_cues.mkv")  # a live stream's Matroska: no index to seek by
    return folder / "no_cues.mkv"


def ntsc_rate(folder):
    ffmpeg(*lavfi_testsrc(12, rate="30000/1001"), "-c:v", "libx264", "-bf", "3", "-g", "30", folder / "ntsc.mp4")
    return folder / "ntsc.mp4"


OTHER_STREAMS = {  # shorter: cut into segments of 2 s
    "open-GOP H.264 cut into MPEG-TS": h264_open_gop_cut_into_ts,
    "variable frame rate": variable_rate,
    "edit list": edit_list,
    "fragmented MP4": fragmented_mp4,
    "Matroska without cues": mkv_without_cues,
    "30000/1001 fps": ntsc_rate,
}

SAMPLINGS = {  # name: options; windows of 8 frames of r21d's input
    "every frame": dict(stack_size=8, step_size=8),
    "sparse": dict(stack_size=8, step_size=30),  # 22 frames of 30 in no window: not even decoded
    "resampled to 7 fps": dict(stack_size=8, step_size=8, extraction_fps=7),
    "resampled to 12 fps": dict(stack_size=8, step_size=8, extraction_fps=12),
}


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    made = {}

    def make(name):
        if name not in made:
            folder = tmp_path_factory.mktemp("streams")
            made[name] = str({**REPRODUCTIONS, **OTHER_STREAMS}[name](folder))
        return made[name]

    return make


def assert_same(outputs, reference):
    assert outputs.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(outputs[key], reference[key], err_msg=key)


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("stream", REPRODUCTIONS)
def test_the_reproductions_give_one_decodes_features_with_1_2_and_3_processes(streams, stream, sampling):
    path = streams(stream)
    reference, segments, _ = extract(path, 1, **SAMPLINGS[sampling])
    assert segments == 1 and len(reference["timestamps_ms"]) > 20
    for workers in (2, 3):
        outputs, segments, decoded_whole = extract(path, workers, **SAMPLINGS[sampling])
        assert_same(outputs, reference)
        if stream == "x264 intra refresh":  # no key frame a decoder starts at cleanly: not cut at all
            assert (segments, decoded_whole) == (1, None)
        else:
            assert (segments, decoded_whole) == (workers, None)


@needs_ffmpeg
@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("stream", OTHER_STREAMS)
def test_awkward_streams_give_one_decodes_features_in_segments(streams, stream, sampling):
    path = streams(stream)
    reference, _, _ = extract(path, 1, **SAMPLINGS[sampling])
    outputs, segments, decoded_whole = extract(path, 3, min_segment_seconds=2, **SAMPLINGS[sampling])
    assert_same(outputs, reference)
    assert (segments, decoded_whole) == (3, None)  # cut, and no check failed


def flag_as_key_frames(source, target, flagged):
    """``source``'s video remuxed into ``target``, its packets numbered n for which ``flagged(n)``
    flagged as key frames, as a muxer that trusts a wrong encoder would."""
    with av.open(str(source)) as reading, av.open(str(target), "w") as writing:
        stream = writing.add_stream_from_template(reading.streams.video[0])
        for number, packet in enumerate(p for p in reading.demux(reading.streams.video[0]) if p.size):
            packet.is_keyframe = packet.is_keyframe or flagged(number)
            packet.stream = stream
            writing.mux(packet)
    return str(target)


def mpeg4_p_frames_flagged_as_key_frames(folder):
    """MPEG-4 Part 2 with one I-frame, every 25th packet flagged as a key frame: the planner cuts
    there, and a decoder started there gives every frame, on time, from a grey reference: only
    the pixels show that they are not the frames of one decode."""
    ffmpeg(*lavfi_testsrc(30), "-c:v", "mpeg4", "-g", "1000", "-bf", "0", "-q:v", "4", folder / "one_i_frame.mkv")
    return flag_as_key_frames(folder / "one_i_frame.mkv", folder / "false_keys.mp4", lambda n: n % 25 == 0)


def h264_recovery_points_after_idr_frames(folder):
    """15 s of H.264 with an IDR frame every second, then 25 s with intra refresh, joined without
    re-encoding: the first cut is clean, so the video is cut; a decoder started at a later one (a
    recovery point) drops frames until the picture is rebuilt, and the numbering check finds it out."""
    ffmpeg(*lavfi_testsrc(15), "-c:v", "libx264", "-bf", "0", "-g", "25", folder / "idr.ts")
    ffmpeg(*lavfi_testsrc(25), "-c:v", "libx264", "-bf", "0", "-x264-params", "intra-refresh=1:keyint=25",
           folder / "refresh.ts")
    (folder / "parts.txt").write_text(f"file '{folder / 'idr.ts'}'\nfile '{folder / 'refresh.ts'}'\n")
    ffmpeg("-f", "concat", "-safe", "0", "-i", folder / "parts.txt", "-c", "copy", folder / "joined.ts")
    return str(folder / "joined.ts")


PLANNER_DEFEATS = {  # name: (stream, how the check finds it out)
    "MPEG-4 P-frames flagged as key frames": (mpeg4_p_frames_flagged_as_key_frames,
                                              r"segments disagree: frame \d+ decoded from a key frame differs"),
    "H.264 recovery points after IDR frames": (h264_recovery_points_after_idr_frames,
                                               r"frames not as the index numbers them: frame \d+ was not decoded"),
}


@needs_ffmpeg
@pytest.mark.parametrize("sampling", ["every frame", "resampled to 7 fps"])
@pytest.mark.parametrize("stream", PLANNER_DEFEATS)
def test_segments_that_disagree_with_one_decode_restart_it_whole(tmp_path, stream, sampling):
    make, reason = PLANNER_DEFEATS[stream]
    path = make(tmp_path)
    reference, _, _ = extract(path, 1, **SAMPLINGS[sampling])
    outputs, segments, decoded_whole = extract(path, 3, **SAMPLINGS[sampling])
    assert_same(outputs, reference)
    assert segments == 1 and re.match(reason, decoded_whole), decoded_whole


@needs_ffmpeg
def test_the_run_log_says_why_a_video_was_decoded_again_in_one_piece(tmp_path):
    path = mpeg4_p_frames_flagged_as_key_frames(tmp_path)
    out = tmp_path / "out"
    done = run_cli(f"video_paths=[{path}]", "pretrained=false", "device=cpu", "decode_workers=2", "stack_size=8",
                   "step_size=200", "on_extraction=save_numpy", f"output_path={out}")
    assert done.returncode == 0, done.stderr
    (log,) = (out / ".runs").iterdir()
    (video,) = [json.loads(line) for line in log.read_text().splitlines() if '"video"' in line]
    assert video["status"] == "extracted"
    assert video["decoded_whole"].startswith("segments disagree: frame ")
