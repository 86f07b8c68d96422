"""No stale, partial or sideways features; clean interrupts; outputs others can read; a readable log."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import (
    ROOT,
    SAMPLE_A,
    SAMPLE_B,
    fifo_video,
    make_extractor,
    needs_ffmpeg,
    randomize,
    run_cli,
    truncated_mp4,
)
from tests.conftest import cli as main_in_process
from tests.decoding import decode_all

OUT = ("r21d", "r2plus1d_18_16_kinetics")


@pytest.fixture
def cli(r21d_checkpoint, tmp_path, capsys):
    def run(*args, checkpoint=r21d_checkpoint):
        code = main_in_process(*[f"weights_path={checkpoint}", f"output_path={tmp_path / 'out'}", "device=cpu",
                     "on_extraction=save_numpy", f"input_root={ROOT / 'sample'}", *args])
        captured = capsys.readouterr()
        return code, captured.err.strip().splitlines()[-1] if captured.err.strip() else ""

    return run


def features(tmp_path, name="b"):
    return np.load(tmp_path / "out" / OUT[0] / OUT[1] / f"{name}_r21d.npy")


def test_outputs_made_with_other_settings_are_replaced_not_reused(cli, tmp_path):
    assert cli(f"video_paths=[{SAMPLE_B}]") == (0, "1 extracted, 0 skipped, 0 failed")
    first = features(tmp_path)
    assert cli(f"video_paths=[{SAMPLE_B}]") == (0, "0 extracted, 1 skipped, 0 failed")
    changed = cli(f"video_paths=[{SAMPLE_B}]", "stack_size=8", "step_size=8")
    assert changed == (0, "1 extracted, 0 skipped, 0 failed (1 replaced outputs made with other settings)")
    assert features(tmp_path).shape == (158 // 8, 512)
    assert cli(f"video_paths=[{SAMPLE_B}]", "stack_size=8", "step_size=8")[1] == "0 extracted, 1 skipped, 0 failed"
    assert cli(f"video_paths=[{SAMPLE_B}]", "extraction_fps=10")[1].endswith("(1 replaced outputs made with other settings)")
    assert cli(f"video_paths=[{SAMPLE_B}]")[1].endswith("(1 replaced outputs made with other settings)")
    np.testing.assert_array_equal(features(tmp_path), first)


def test_other_weights_are_other_settings(cli, tmp_path):
    from torchvision.models.video import r2plus1d_18

    other = tmp_path / "other.pth"
    torch.save(randomize(r2plus1d_18(weights=None), seed=7).state_dict(), other)
    cli(f"video_paths=[{SAMPLE_B}]")
    first = features(tmp_path)
    line = cli(f"video_paths=[{SAMPLE_B}]", checkpoint=other)[1]
    assert line.endswith("(1 replaced outputs made with other settings)")
    assert not np.allclose(features(tmp_path), first)


def test_outputs_without_a_record_of_their_settings_are_redone(cli, tmp_path):
    cli(f"video_paths=[{SAMPLE_B}]")
    (tmp_path / "out" / OUT[0] / OUT[1] / "b_settings.json").unlink()  # as an older version left them
    assert cli(f"video_paths=[{SAMPLE_B}]")[1].endswith("(1 replaced outputs made with other settings)")


def test_saved_files_follow_the_umask(cli, tmp_path):
    old = os.umask(0o022)
    try:
        cli(f"video_paths=[{SAMPLE_B}]")
    finally:
        os.umask(old)
    folder = tmp_path / "out" / OUT[0] / OUT[1]
    assert {oct(path.stat().st_mode & 0o777) for path in folder.iterdir()} == {"0o644"}


def test_stale_temporary_files_are_removed_and_live_ones_kept(cli, tmp_path):
    folder = tmp_path / "out" / OUT[0] / OUT[1]
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = folder / f".tmp-{host}-{dead.stdout.strip()}-abc-b_r21d.npy"  # its writer was killed
    live = folder / f".tmp-{host}-{os.getpid()}-def-b_r21d.npy"  # a writer still at work
    foreign = folder / ".tmp-otherhost-1-ghi-b_fps.npy"
    old = folder / ".tmp-k2j4ab8c-b_fps.npy"  # an older version's name (mkstemp), left long ago
    for path in (stale, live, foreign, old):
        path.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    assert cli(f"video_paths=[{SAMPLE_B}]")[0] == 0
    assert not stale.exists() and not old.exists()
    assert live.exists() and foreign.exists()  # another machine's writer may still be at work


def test_an_unusable_output_path_fails_before_any_video(tmp_path):
    # A fresh process with a time limit: a regression that reads the video, or hangs, fails here
    # instead of stopping the suite. The video is a FIFO: reading it would add a line of its own.
    (tmp_path / "file").write_text("")
    unusable = tmp_path / "file" / "out"
    video = fifo_video(tmp_path / "video.mp4")
    result = run_cli(f"video_paths=[{video}]", "pretrained=false", "device=cpu", "on_extraction=save_numpy",
                     f"output_path={unusable}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: output_path={unusable}: cannot write there (Not a directory)"]


def test_equal_names_are_no_clash_when_nothing_is_saved(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    shutil.copy(SAMPLE_B, tmp_path / "x.mp4")
    shutil.copy(SAMPLE_B, tmp_path / "x.mkv")
    code = main_in_process(*[f"video_paths=[{tmp_path / 'x.mp4'},{tmp_path / 'x.mkv'}]", "pretrained=false", "device=cpu",
                 "stack_size=64", "step_size=64"])
    assert code == 0 and capsys.readouterr().err.endswith("2 extracted, 0 skipped, 0 failed\n")


def test_unquoted_special_characters_get_a_quoting_hint(capsys):
    assert main_in_process(*["video_paths=[my=clip.mp4]"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "quote a value with spaces, commas, '='" in err


@needs_ffmpeg
def test_a_truncated_download_fails_and_keep_partial_keeps_it(cli, tmp_path):
    cut = truncated_mp4(tmp_path)  # the index is whole, the frames half
    code, line = cli(f"video_paths=[{cut},{SAMPLE_B}]", f"input_root={tmp_path}")
    assert (code, line) == (1, "1 extracted, 0 skipped, 1 failed")
    assert not (tmp_path / "out" / OUT[0] / OUT[1] / "cut_r21d.npy").exists()
    code, line = cli(f"video_paths=[{cut}]", "keep_partial=true", f"input_root={tmp_path}")
    assert (code, line) == (0, "1 extracted, 0 skipped, 0 failed")
    assert 0 < len(features(tmp_path, "cut")) < 200 // 16


@needs_ffmpeg
def test_the_failure_line_says_how_much_of_a_truncated_file_was_read(tmp_path):
    cut = truncated_mp4(tmp_path)
    result = run_cli(f"video_paths=[{cut}]", "pretrained=false", "device=cpu", cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(rf"error: {re.escape(str(cut))}: truncated: decoding ended at [\d.]+ s of the declared 8.0 s",
                     result.stderr)


@needs_ffmpeg
def test_a_rotated_phone_clip_gives_the_features_of_the_upright_clip(tmp_path):
    rotated, upright = tmp_path / "rotated.mp4", tmp_path / "upright.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(rotated)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(rotated), "-c:v", "libx264", "-qp", "0", "-pix_fmt",
                    "yuv420p", "-fps_mode", "passthrough", str(upright)], check=True)  # ffmpeg turns it upright
    extractor = make_extractor(stack_size=32, step_size=32)
    turned, reference = (extractor.extract(str(path))["r21d"] for path in (rotated, upright))
    np.testing.assert_allclose(turned, reference, atol=1e-5, rtol=0)
    sideways = make_extractor(stack_size=32, step_size=32).extract(SAMPLE_B)["r21d"]  # the stored frames
    assert not np.allclose(sideways, reference, atol=1e-3)


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_exit_130_and_no_temporary_file(tmp_path):
    folder = tmp_path / "out" / OUT[0] / OUT[1]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "pretrained=false",
         "device=cpu", "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}", f"input_root={ROOT / 'sample'}",
         "stack_size=8", "step_size=8"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        # as from a terminal: a child of a background job would inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # videos go in the order of their paths: Ctrl-C once a.mp4 is saved (its record is written
        # last) and b.mp4 (19 windows) is claimed
        deadline = time.monotonic() + 300
        while not ((folder / "a_settings.json").exists() and (folder / "b.claim").exists()):
            assert process.poll() is None, f"the run ended before it was interrupted:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, "a.mp4 was not saved within 300 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)  # a bound for a hang, not a speed test
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == ("interrupted: 1 extracted, 0 skipped, 0 failed; videos in progress were not saved "
                                    "(run the same command again to finish)")
    assert (folder / "a_r21d.npy").exists() and not (folder / "b_r21d.npy").exists()
    assert not (folder / "b.claim").exists()  # given up, so that another process may take it at once
    assert list((tmp_path / "out").rglob(".tmp-*")) == []


def test_a_log_file_gets_lines_not_progress_bars(tmp_path):
    result = run_cli(f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "pretrained=false", "device=cpu", "stack_size=32",
                     "step_size=32", cwd=tmp_path)
    assert result.returncode == 0
    assert "\r" not in result.stderr
    assert result.stderr.splitlines() == [
        "warning: pretrained=false: the network has random weights, so its features are meaningless",
        "2 extracted, 0 skipped, 0 failed",
    ]


def test_the_flat_memory_mechanism_a_video_in_flight_keeps_copies_not_views_of_the_network_output():
    # The mechanism only, not a measurement: memory staying flat over a long video is shown by
    # benchmarks/benchmark.py --memory-lengths. A view keeps torch's output block alive, which pinned
    # the freed window buffers in glibc's heap: memory grew by about two windows per window (5 GB
    # over 750 windows of a 20-minute video).
    from video_features.utils.frames.windows import Window, WindowAssembler, WindowPlan
    from video_features.utils.pipeline.video_in_flight import VideoInFlight
    from video_features.utils.video.completeness import Completeness

    video = VideoInFlight("v.mp4", 0, 25.0, Completeness(None, 0.04), {0: WindowAssembler(WindowPlan(2, 2, (0, 1)), 0.04)},
                          None, windows_pending=2)
    output = torch.zeros(2, 512).numpy()
    for row in range(2):
        video.record(Window(row, [torch.zeros(3, 4, 4)] * 2, 0.0, 0.08), output[row], output[row, :4])
    assert all(array.base is None for array in [*video.features.values(), *video.logits.values()])


def test_the_samples_give_every_model_several_real_windows():
    from video_features.models.registry import families
    from video_features.utils.frames.windows import WindowPlan
    from video_features.utils.video.reader import VideoReader

    with VideoReader(str(ROOT / "sample" / "c.mp4")) as reader:
        frames = sum(1 for _ in decode_all(reader, lambda index: False))
    for family in families().values():
        for checkpoint in family.checkpoints:  # a real window, not one padded with the last frame
            assert frames >= checkpoint.stack_size, checkpoint.name
        default = family.default
        assert WindowPlan(default.stack_size, default.step_size, ()).count(frames) >= 2, default.name
