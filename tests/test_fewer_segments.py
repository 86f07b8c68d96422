"""Why a long video was cut into fewer segments than decode_workers asks for is in its run-log record,
and the summary counts the videos not cut for a reason other than their length; the usual edit-list
cut (`ffmpeg -ss T -i in.mp4 -c copy out.mp4`) is cut into segments, with one decode's features."""
import json

import pytest

from tests.conftest import needs_ffmpeg, run_cli
from tests.test_segments import SAMPLINGS, assert_same, extract, ffmpeg, intra_refresh, lavfi_testsrc


def edit_list_cut_of_default_x264(folder):
    """x264's defaults (key frames 10 s apart at 25 fps, B-pyramids) cut at 7.3 s without re-encoding:
    the edit list discards the 7.3 s before it, which a decoder reads as references only."""
    ffmpeg(*lavfi_testsrc(75), "-c:v", "libx264", folder / "default.mp4")
    ffmpeg("-ss", "7.3", "-i", folder / "default.mp4", "-c", "copy", folder / "cut.mp4")
    return str(folder / "cut.mp4")


@needs_ffmpeg
@pytest.mark.parametrize("sampling", ["every frame", "resampled to 7 fps"])
def test_an_edit_list_cut_is_cut_into_segments_with_one_decodes_features(tmp_path, sampling):
    path = edit_list_cut_of_default_x264(tmp_path)
    reference, _, _ = extract(path, 1, **SAMPLINGS[sampling])
    outputs, segments, decoded_whole = extract(path, 3, **SAMPLINGS[sampling])
    assert_same(outputs, reference)
    assert (segments, decoded_whole) == (3, None)


def concatenated_ts(folder):
    """Two MPEG-TS files joined with cat: the second's clock starts again."""
    for part in ("a", "b"):
        ffmpeg(*lavfi_testsrc(25, size="64x48"), "-c:v", "libx264", "-g", "25", folder / f"{part}.ts")
    (folder / "joined.ts").write_bytes((folder / "a.ts").read_bytes() + (folder / "b.ts").read_bytes())
    return str(folder / "joined.ts")


def sparse_key_frames(folder):
    ffmpeg(*lavfi_testsrc(40, size="64x48"), "-c:v", "libx264", "-g", "100000", folder / "one_key_frame.mp4")
    return str(folder / "one_key_frame.mp4")


def short_video(folder):
    ffmpeg(*lavfi_testsrc(12, size="64x48"), "-c:v", "libx264", "-g", "25", folder / "short.mp4")
    return str(folder / "short.mp4")


@needs_ffmpeg
def test_the_run_log_says_how_many_segments_and_why_fewer_and_the_summary_counts_the_long_ones(tmp_path):
    videos = {"short": short_video(tmp_path), "no index": concatenated_ts(tmp_path),
              "recovery points": str(intra_refresh(tmp_path)), "sparse": sparse_key_frames(tmp_path)}
    out = tmp_path / "out"
    done = run_cli(f"video_paths=[{','.join(videos.values())}]", "pretrained=false", "device=cpu",
                   "decode_workers=3", "stack_size=16", "step_size=400", "on_extraction=save_numpy",
                   f"output_path={out}")
    assert done.returncode == 0, done.stderr
    (log,) = (out / ".runs").iterdir()
    records = {r["path"]: r for r in map(json.loads, log.read_text().splitlines()) if r["event"] == "video"}
    why = {name: (records[path]["segments"], records[path]["fewer_segments"]) for name, path in videos.items()}
    assert why == {
        "short": (1, "too short for more segments of 10 s"),
        "no index": (1, "its timestamps cannot number its frames (none, repeated, or going back as in "
                        "concatenated MPEG-TS)"),
        "recovery points": (1, "its key frames are recovery points (intra refresh), where a decoder does not "
                               "start cleanly"),
        "sparse": (1, "its key frames are too far apart for more segments"),
    }
    assert done.stderr.strip().splitlines()[-1] == (
        "4 extracted, 0 skipped, 0 failed; 3 long enough to cut into segments decoded in fewer than asked "
        "(the run log says why)")
