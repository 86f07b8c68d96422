"""README claims that had no test of their own: inputs, list files, status, run logs, claims kept
fresh, the settings record, weights checks, rotation with the re-encode method, quoting, shards."""
import email.message
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.response

import av
import numpy as np
import pytest
import torch

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B, make_extractor, needs_ffmpeg
from tests.conftest import cli as main_in_process
from video_features.utils.errors import ExtractionError, WeightsError
from video_features.utils.store.runlog import read_records

OUT = ("r21d", "r2plus1d_18_16_kinetics")
FAST = ("stack_size=8", "step_size=200")  # one short window: quick on 2 cores


@pytest.fixture
def cli(r21d_checkpoint, tmp_path, capsys):
    """main.py in this process with the random checkpoint, saving into tmp_path / 'out'."""

    def run(*args):
        code = main_in_process(*[f"weights_path={r21d_checkpoint}", f"output_path={tmp_path / 'out'}", "device=cpu",
                     "on_extraction=save_numpy", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def saved(tmp_path, name, key):
    return np.load(tmp_path / "out" / OUT[0] / OUT[1] / f"{name}_{key}.npy")


def test_video_paths_may_be_one_path_without_brackets_and_outputs_have_the_documented_types(cli, tmp_path):
    code, _, err = cli(f"video_paths={SAMPLE_B}", f"input_root={ROOT / 'sample'}")  # README: video_paths=./sample/a.mp4
    assert code == 0 and err.endswith("1 extracted, 0 skipped, 0 failed\n")
    features, times, fps = (saved(tmp_path, "b", key) for key in ("r21d", "timestamps_ms", "fps"))
    assert (features.shape, features.dtype) == ((158 // 16, 512), np.float32)
    assert (times.shape, times.dtype) == ((158 // 16, 2), np.float64)
    assert (fps.shape, fps.dtype) == ((), np.float64) and float(fps) == pytest.approx(30000 / 1001)


def test_a_list_file_skips_blank_lines_and_comments_and_lists_each_video_once(cli, tmp_path):
    shutil.copy(SAMPLE_B, tmp_path / "b.mp4")
    shutil.copy(SAMPLE_A, tmp_path / "a.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the videos\n{tmp_path / 'b.mp4'}\n\n   \n#{tmp_path / 'a.mp4'}\n  # {tmp_path / 'a.mp4'}\n"
                       f"{tmp_path / 'b.mp4'}\n")
    code, _, err = cli(f"file_with_video_paths={listing}", *FAST)
    assert code == 0 and err.endswith("1 extracted, 0 skipped, 0 failed\n")
    videos = [r["path"] for r in read_records(str(tmp_path / "out")) if r["event"] == "video"]
    assert videos == [str(tmp_path / "b.mp4")]  # the commented a.mp4 is not read, b.mp4 once


def test_status_without_a_list_sums_every_logged_video_and_the_run_log_records_each(cli, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    code, _, _ = cli(f"video_paths=[{SAMPLE_B},{broken}]", *FAST)
    assert code == 1
    assert not list((tmp_path / "out").rglob("*.claim"))  # claims go when a video is done or has failed
    code, out, _ = cli("status=true", *FAST)  # the run's command line, with status=true
    assert code == 1
    assert out.splitlines() == [
        "1 done, 1 failed, 0 not done of 2 videos "
        "(r21d/r2plus1d_18_16_kinetics; 1 processes, 0 without an end record: running or killed)",
        f"failed: {broken}: cannot open: invalid data found when processing input",
    ]
    # the run log: the resolved config, versions, host, device and shard, then each video, then the end
    start, *videos, end = read_records(str(tmp_path / "out"))
    assert start["event"] == "start" and start["config"]["video_paths"] == [SAMPLE_B, str(broken)]
    assert (start["versions"]["torch"], start["versions"]["pyav"]) == (torch.__version__, av.__version__)
    assert start["versions"]["ffmpeg"] and start["versions"]["tool"]
    assert (start["device"], start["shard"]) == ("cpu", "0/1") and start["host"]
    assert sorted((v["path"], v["status"], v["windows"], v["error"]) for v in videos) == sorted([
        (SAMPLE_B, "extracted", 1, None),
        (str(broken), "failed", None, "cannot open: invalid data found when processing input"),
    ])
    assert all(v["seconds"] > 0 for v in videos if v["status"] == "extracted")
    assert (end["event"], end["summary"], end["exit_code"]) == ("end", "1 extracted, 0 skipped, 1 failed", 1)
    # once every video is done, status exits 0
    assert cli(f"video_paths=[{SAMPLE_B}]", *FAST)[0] == 0
    listing = tmp_path / "list.txt"
    listing.write_text(f"{SAMPLE_B}\n")
    code, out, _ = cli("status=true", *FAST, f"file_with_video_paths={listing}")
    assert code == 0 and out.startswith("all 1 videos done (r21d/r2plus1d_18_16_kinetics; 2 processes, 0 without")


def test_a_claim_is_refreshed_while_its_video_is_extracted(tmp_path, r21d_checkpoint):
    """claim_stale_seconds=0.4: the owner touches its claim every quarter of that while it works."""
    claim = tmp_path / "out" / OUT[0] / OUT[1] / "a.claim"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), f"video_paths=[{SAMPLE_A}]", f"weights_path={r21d_checkpoint}",
         "device=cpu", "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}", f"input_root={ROOT / 'sample'}",
         "stack_size=8", "step_size=24", "claim_stale_seconds=0.4"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    times = set()  # the claim's modification times seen while it exists
    try:
        while process.poll() is None:
            try:
                times.add(claim.stat().st_mtime_ns)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        err = process.stderr.read()
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert err.endswith("1 extracted, 0 skipped, 0 failed\n")  # 6 windows of 720p frames: a second or more
    assert len(times) >= 3, f"the claim was touched {len(times) - 1} times while a.mp4 was extracted"
    assert not claim.exists()


def test_the_settings_record_holds_what_made_the_outputs(cli, tmp_path, r21d_checkpoint):
    assert cli(f"video_paths=[{SAMPLE_B}]", f"input_root={ROOT / 'sample'}", "extraction_fps=10", "stack_size=8",
               "step_size=4")[0] == 0
    record = json.loads((tmp_path / "out" / OUT[0] / OUT[1] / "b_settings.json").read_text())
    stat = os.stat(r21d_checkpoint)
    assert record["feature_type"] == "r21d" and record["model_name"] == "r2plus1d_18_16_kinetics"
    assert record["weights"] == {"file": r21d_checkpoint, "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
    assert (record["stack_size"], record["step_size"], record["network_frames"]) == (8, 4, list(range(8)))
    assert (record["extraction_fps"], record["fps_method"], record["precision"]) == (10.0, "filter", "fp32")
    assert (record["crops"], record["crop_reduce"]) == (1, "none")
    preprocessing = record["preprocessing"]
    assert (preprocessing["resize"], preprocessing["crop"]) == ([128, 171], 112)
    assert (preprocessing["mean"], preprocessing["std"]) == ([0.43216, 0.394666, 0.37645], [0.22803, 0.22145, 0.216989])


def test_a_rewritten_weights_file_or_another_crop_count_are_other_settings(cli, tmp_path, r21d_checkpoint):
    copy = tmp_path / "weights.pth"
    shutil.copy(r21d_checkpoint, copy)
    args = (f"video_paths=[{SAMPLE_B}]", *FAST)
    assert cli(*args, f"weights_path={copy}")[0] == 0
    assert cli(*args, f"weights_path={copy}")[2].endswith("0 extracted, 1 skipped, 0 failed\n")
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # the same path, rewritten later
    assert cli(*args, f"weights_path={copy}")[2].endswith("(1 replaced outputs made with other settings)\n")
    assert cli(*args, f"weights_path={copy}", "crops=3")[2].endswith("(1 replaced outputs made with other settings)\n")
    assert cli(*args, f"weights_path={copy}", "crops=3")[2].endswith("0 extracted, 1 skipped, 0 failed\n")


@needs_ffmpeg
def test_the_reencode_method_is_another_setting(cli):
    args = (f"video_paths=[{SAMPLE_B}]", "extraction_fps=10", *FAST)
    assert cli(*args)[0] == 0
    assert cli(*args, "fps_method=reencode")[2].endswith("(1 replaced outputs made with other settings)\n")
    assert cli(*args, "fps_method=reencode")[2].endswith("0 extracted, 1 skipped, 0 failed\n")


@needs_ffmpeg
def test_a_rotated_clip_is_turned_upright_with_the_reencode_method_too(tmp_path, r21d_checkpoint):
    rotated, upright = tmp_path / "rotated.mp4", tmp_path / "upright.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-t", "2", "-an", "-c", "copy", "-metadata:s:v:0",
                    "rotate=90", str(rotated)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(rotated), "-c:v", "libx264", "-qp", "0", "-pix_fmt",
                    "yuv420p", "-fps_mode", "passthrough", str(upright)], check=True)  # ffmpeg turns it upright
    extractor = make_extractor(weights_path=r21d_checkpoint, extraction_fps=10, stack_size=8, step_size=8,
                               fps_method="reencode", tmp_path=str(tmp_path / "tmp"))
    turned, reference = (extractor.extract(str(path))["r21d"] for path in (rotated, upright))
    assert turned.shape == reference.shape == (2, 512)
    # the same upright frames through the same re-encode (measured: identical)
    np.testing.assert_allclose(turned, reference, atol=1e-6, rtol=0)
    sideways = extractor.extract(SAMPLE_B)["r21d"][:2]  # the frames as stored
    assert not np.allclose(sideways, reference, atol=1e-3)


def test_a_quoted_path_with_spaces_commas_and_accents_runs(cli, tmp_path):
    path = tmp_path / "my clip, été.mp4"
    shutil.copy(SAMPLE_B, path)
    code, _, err = cli(f'video_paths=["{path}"]', f"input_root={tmp_path}", *FAST)
    assert code == 0, err
    assert saved(tmp_path, "my clip, été", "r21d").shape == (1, 512)


def test_every_shard_names_a_video_alike(cli, tmp_path):
    for folder, source in (("cat", SAMPLE_A), ("dog", SAMPLE_B)):
        (tmp_path / "videos" / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / "videos" / folder / "0.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'videos/dog/0.mp4'}\n{tmp_path / 'videos/cat/0.mp4'}\n")
    # shard 0 of 2 is cat/0.mp4 (by path); its name comes from its path alone
    assert cli(f"file_with_video_paths={listing}", f"input_root={tmp_path / 'videos'}", "shard_id=0", "num_shards=2",
               *FAST)[0] == 0
    written = sorted(p.relative_to(tmp_path / "out" / OUT[0] / OUT[1]).as_posix()
                     for p in (tmp_path / "out" / OUT[0] / OUT[1]).rglob("*.npy"))
    assert written == ["cat/0_fps.npy", "cat/0_r21d.npy", "cat/0_timestamps_ms.npy"]


def test_extract_raises_an_extraction_error_of_one_line(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ExtractionError) as error:
        make_extractor().extract(str(broken))
    assert str(error.value) == f"{broken}: cannot open: invalid data found when processing input"


def test_a_download_that_fails_its_sha256_check_is_refused_and_not_cached(monkeypatch, tmp_path, r21d_checkpoint):
    # No network here: the server's answer is faked below torch.hub, whose own hash check runs.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    served = []

    def server(request):
        served.append(request.full_url)
        body = open(r21d_checkpoint, "rb").read()  # a real checkpoint, but not the release's bytes
        return urllib.response.addinfourl(io.BytesIO(body), email.message.Message(), request.full_url)

    monkeypatch.setattr(torch.hub, "urlopen", server)
    with pytest.raises(WeightsError, match=r'invalid hash value \(expected "91a641e6"'):
        make_extractor(pretrained=True)
    assert served == ["https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"]
    assert [p.name for p in (tmp_path / "torch").rglob("*") if p.is_file()] == []
