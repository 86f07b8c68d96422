"""The decoding processes and the feed: a long video cut into segments gives the features of one
decode, a file that starts with frames the decoder drops is numbered as one decode numbers it, a
process that dies fails nothing else, and the decoding processes stay free of torch."""
import os
import signal
import subprocess
import sys

import numpy as np
import psutil
import pytest

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B, cli, make_extractor, needs_ffmpeg
from video_features.utils.video.segments import MIN_SEGMENT_SECONDS


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """25 s of 320x180 testsrc2 at 30 fps with B-frames and a key frame every second: long enough
    to be cut into two segments of at least MIN_SEGMENT_SECONDS."""
    path = str(tmp_path_factory.mktemp("clips") / "long.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=25",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "3", path], check=True)
    assert 25 >= 2 * MIN_SEGMENT_SECONDS
    return path


WINDOWS = {  # name: options; windows far apart keep the networks' work small on a CPU
    "every frame": dict(stack_size=16, step_size=64),
    "sparse frames": dict(feature_type="timesformer", stack_size=64, step_size=160),
    "resampled": dict(extraction_fps=12, stack_size=8, step_size=24),
}


@needs_ffmpeg
@pytest.mark.parametrize("windows", WINDOWS)
def test_a_long_video_decoded_in_segments_gives_the_features_of_one_decode(long_clip, windows, r21d_checkpoint):
    options = dict(WINDOWS[windows])
    if options.get("feature_type") is None:
        options.update(weights_path=r21d_checkpoint, pretrained=True)
    one = make_extractor(**options)
    (whole,) = one.extract_many([long_clip])
    two = make_extractor(decode_workers=2, **options)
    two.inference.network.load_state_dict(one.inference.network.state_dict())  # random weights: the same ones
    (cut,) = two.extract_many([long_clip])
    assert (whole.segments, cut.segments) == (1, 2)
    assert len(cut.outputs["timestamps_ms"]) >= 5
    for key in whole.outputs:
        np.testing.assert_array_equal(cut.outputs[key], whole.outputs[key], err_msg=key)


@needs_ffmpeg
def test_a_file_cut_inside_an_open_gop_gives_the_same_windows_skipping_frames(tmp_path, r21d_checkpoint):
    # it starts with leading frames the decoder drops: windows that skip frames number the frames as
    # windows that decode every frame do
    source = str(tmp_path / "open.mkv")
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-c:v", "libx264", "-x264-params",
                    "open-gop=1:keyint=20", source], check=True)
    path = str(tmp_path / "cut.mkv")
    subprocess.run(["ffmpeg", "-v", "error", "-i", source, "-ss", "0.7", "-c", "copy", path], check=True)
    options = dict(weights_path=r21d_checkpoint, pretrained=True)
    every_window = make_extractor(stack_size=8, step_size=8, **options).extract(path)  # no frame left out
    every_other = make_extractor(stack_size=8, step_size=16, **options).extract(path)  # half the frames skipped
    assert len(every_other["timestamps_ms"]) == (len(every_window["timestamps_ms"]) + 1) // 2
    np.testing.assert_array_equal(every_other["timestamps_ms"], every_window["timestamps_ms"][::2])
    np.testing.assert_allclose(every_other["r21d"], every_window["r21d"][::2], atol=1e-6, rtol=0)


def test_a_decoding_process_that_dies_fails_its_video_alone(r21d_checkpoint):
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True)
    c = str(ROOT / "sample" / "c.mp4")
    results = extractor.extract_many([SAMPLE_B, c, SAMPLE_A])
    first = next(results)
    # the process is on c.mp4 now, waiting for the network to take its frames
    (process,) = [p for p in psutil.Process().children() if "utils.video.worker" in " ".join(p.cmdline())]
    process.send_signal(signal.SIGKILL)
    rest = list(results)
    assert first.path == SAMPLE_B and first.error is None
    assert [(r.path, r.error) for r in rest] == [(c, "the decoding process died (exit code -9)"), (SAMPLE_A, None)]
    assert rest[1].outputs["r21d"].shape == (8, 512)


def test_the_decoding_processes_do_not_import_torch():
    code = "import sys, video_features.utils.video.worker; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr


def run_main(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=timeout)


def test_a_fifo_fails_with_one_line_and_the_other_videos_are_extracted(tmp_path, r21d_checkpoint):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening it would block the reader for ever
    loop = tmp_path / "loop.mp4"
    os.symlink(loop, loop)
    done = run_main(f"video_paths=[{fifo},{loop},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu")
    errors = sorted(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert errors == [f"error: {loop}: cannot read: Too many levels of symbolic links",
                      f"error: {fifo}: not a regular file (a FIFO, socket or device), so it is not read"], done.stderr
    assert done.returncode == 1 and done.stderr.strip().endswith("1 extracted, 0 skipped, 2 failed")


def test_a_claim_that_cannot_be_written_fails_its_video_alone(tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    (out / "r21d" / "r2plus1d_18_16_kinetics" / "sample").mkdir(parents=True)
    (out / "r21d" / "r2plus1d_18_16_kinetics" / "sample" / "a").write_text("")  # where a's folder would be...
    blocked = tmp_path / "sample" / "a" / "x.mp4"
    blocked.parent.mkdir(parents=True)
    os.link(SAMPLE_A, blocked)  # ...of sample/a/x.mp4, named sample/a/x under input_root
    done = run_main(f"video_paths=[{blocked},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                    "on_extraction=save_numpy", f"output_path={out}", f"input_root={tmp_path}", "stack_size=64")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {blocked}: cannot claim it: File exists: {out / 'r21d' / 'r2plus1d_18_16_kinetics' / 'sample' / 'a'}"]
    assert done.returncode == 1 and done.stderr.strip().endswith("1 extracted, 0 skipped, 1 failed")


def test_a_device_failure_stops_the_run_with_one_line(tmp_path, r21d_checkpoint, monkeypatch, capsys):
    import torch

    from video_features.utils.network.runner import Inference

    def out_of_memory(self, clips):  # what a GPU does when a batch does not fit (none here to do it)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Inference, "__call__", out_of_memory)
    out = tmp_path / "out"
    code = cli(*[f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                 "batch_size=4", "on_extraction=save_numpy", f"output_path={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == ("error: cpu ran out of memory: lower batch_size (now 4); the run stopped after 0 extracted, "
                       "0 skipped, 0 failed (videos in progress were not saved)")
    assert not [p for p in out.rglob("*") if p.is_file() and ".runs" not in p.parts]  # no output, claim or temporary file


@needs_ffmpeg
def test_timestamps_that_go_back_are_made_to_increase_with_a_warning(tmp_path, r21d_checkpoint):
    # two MPEG-TS files cut one after the other, the second at another size: its clock starts again
    parts = []
    for number, size in enumerate(("320x180", "240x136")):
        part = tmp_path / f"part{number}.ts"
        subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-t", "2", "-s", size, "-c:v", "libx264",
                        "-an", str(part)], check=True)
        parts.append(part.read_bytes())
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(parts))
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True, stack_size=8, step_size=8)
    with pytest.warns(UserWarning, match="timestamps go back at frame 60") as warned:
        outputs = extractor.extract(str(joined))
    assert len([w for w in warned if "timestamps go back" in str(w.message)]) == 1
    times = outputs["timestamps_ms"]
    assert len(times) == 15 and (times[:, 1] > times[:, 0]).all() and (np.diff(times[:, 0]) > 0).all()
