"""The command line and the shared pipeline, on R(2+1)D with a random checkpoint."""
import os
import pickle
import re
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from tests.conftest import FRAME_COUNTS, ROOT, SAMPLE_A, SAMPLE_B, fifo_video, make_extractor, needs_ffmpeg, run_cli
from tests.conftest import cli as main_in_process
from video_features.utils.errors import WeightsError

KEYS = ("r21d", "timestamps_ms", "fps")


@pytest.fixture
def cli(r21d_checkpoint, tmp_path, capsys):
    """main.py in this process (no interpreter start-up), with the random checkpoint and a fresh output folder."""

    def run(*args):
        code = main_in_process(*[f"weights_path={r21d_checkpoint}", f"output_path={tmp_path / 'out'}", "device=cpu",
                     f"input_root={ROOT / 'sample'}", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def out_file(tmp_path, name, key, extension=".npy"):
    return tmp_path / "out" / "r21d" / "r2plus1d_18_16_kinetics" / f"{name}_{key}{extension}"


def test_numpy_pickle_and_the_python_api_give_the_same_outputs(cli, tmp_path, r21d_checkpoint):
    assert cli(f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "on_extraction=save_numpy")[0] == 0
    assert cli(f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "on_extraction=save_pickle")[0] == 0
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True)
    for path, name in ((SAMPLE_A, "a"), (SAMPLE_B, "b")):
        api = extractor.extract(path)
        for key in KEYS:
            saved = np.load(out_file(tmp_path, name, key))
            with open(out_file(tmp_path, name, key, ".pkl"), "rb") as file:
                pickled = pickle.load(file)
            np.testing.assert_array_equal(saved, api[key])
            np.testing.assert_array_equal(pickled, api[key])
    assert np.load(out_file(tmp_path, "a", "r21d")).shape == (FRAME_COUNTS[SAMPLE_A] // 16, 512)
    leftovers = [f for f in os.listdir(tmp_path / "out/r21d/r2plus1d_18_16_kinetics") if f.startswith(".tmp")]
    assert leftovers == []


def test_a_second_run_skips_and_a_truncated_output_is_redone(cli, tmp_path):
    args = (f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "on_extraction=save_numpy")
    assert cli(*args)[2].endswith("2 extracted, 0 skipped, 0 failed\n")
    before = np.load(out_file(tmp_path, "b", "r21d"))
    assert cli(*args)[2].endswith("0 extracted, 2 skipped, 0 failed\n")
    damaged = out_file(tmp_path, "b", "r21d")
    damaged.write_bytes(damaged.read_bytes()[:1000])
    assert cli(*args)[2].endswith("1 extracted, 1 skipped, 0 failed\n")
    np.testing.assert_array_equal(np.load(damaged), before)


def test_a_corrupt_video_fails_alone_with_one_line_and_a_nonzero_exit(tmp_path, r21d_checkpoint):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{SAMPLE_A}\n{corrupt}\n{tmp_path / 'missing.mp4'}\n\n{SAMPLE_B}\n")
    result = run_cli(
        f"file_with_video_paths={listing}", f"weights_path={r21d_checkpoint}", "device=cpu",
        "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}", cwd=tmp_path,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {corrupt}: cannot open: invalid data found when processing input",
        f"error: {tmp_path / 'missing.mp4'}: file not found",
    ]
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().endswith("2 extracted, 0 skipped, 2 failed")
    written = sorted(p.name for p in (tmp_path / "out" / "r21d").rglob("*") if p.is_file())
    # the inputs lie outside the current folder, so names are their absolute paths
    assert len(written) == 8 and not any("corrupt" in name or "missing" in name for name in written)
    assert not (tmp_path / "outputs").exists()  # no stray Hydra folder


QUOTING_HINT = ("quote a value with spaces, commas, '=' or non-ASCII letters, e.g. 'video_paths=[\"my clip.mp4\"]', "
                "or list the videos in file_with_video_paths")


BAD_OPTIONS = [  # the options and the whole line; a regex ends with .* where the rest lists registered choices
    (["foo=1"], re.escape("error: unknown option 'foo' (see python main.py --help)")),
    (["feature_type=c3d"], re.escape("error: unknown feature_type 'c3d'; choose one of: r21d, ") + ".*"),
    (["model_name=r3d_18"],
     re.escape("error: unknown model_name 'r3d_18' for feature_type=r21d; choose one of: r2plus1d_18_16_kinetics, ") + ".*"),
    (["stack_size=0"], re.escape("error: stack_size must be a positive integer or null, got 0")),
    (["step_size=-4"], re.escape("error: step_size must be a positive integer or null, got -4")),
    (["stack_size=abc"], re.escape("error: stack_size: Value 'abc' of type 'str' could not be converted to Integer")),
    (["batch_size=0"], re.escape("error: batch_size must be a positive integer, got 0")),
    (["decode_workers=0"], re.escape("error: decode_workers must be a positive integer or auto, got 0")),
    (["extraction_fps=0"], re.escape("error: extraction_fps must be a positive number or null, got 0.0")),
    (["on_extraction=save_hdf5"],
     re.escape("error: on_extraction: Invalid value 'save_hdf5', expected one of [print, save_numpy, save_pickle, save_parquet]")),
    (["device=tpu"], re.escape("error: device must be auto, cpu, cuda or cuda:N; got 'tpu'")),
    (["precision=fp16"],
     re.escape("error: precision=fp16 needs a CUDA device (a CPU emulates it: 128x slower); on a CPU use bf16 or fp32")),
    (["video_paths=null"], re.escape("error: no videos given: set video_paths=... or file_with_video_paths=...")),
    (["file_with_video_paths=/nonexistent/list.txt"],
     re.escape("error: file_with_video_paths=/nonexistent/list.txt: No such file or directory")),
    (["weights_path=/nonexistent.pth", "pretrained=true"], re.escape("error: weights_path=/nonexistent.pth: file not found")),
    (["weights_path=/nonexistent.pth"],
     re.escape("error: weights_path and pretrained=false contradict each other; give one of them")),
    (["stack_size=[1"], re.escape(f"error: stack_size=[1: Hydra cannot read this value; {QUOTING_HINT}")),
    (["pretrained=false", "video_paths=[é.mp4]"],  # a parser's (ANTLR's) exception name is no help
     re.escape(f"error: video_paths=[é.mp4]: Hydra cannot read this value; {QUOTING_HINT}")),
]


@pytest.mark.parametrize("args, line", BAD_OPTIONS, ids=[" ".join(args) for args, _ in BAD_OPTIONS])
def test_bad_options_fail_with_one_clear_line_before_any_video(args, line, tmp_path, capsys):
    # the video is a named pipe: reading it would add a line of its own before the error
    video = fifo_video(tmp_path / "video.mp4")
    options = {"video_paths": f"[{video}]", "pretrained": "false", "device": "cpu"}
    options.update(arg.split("=", 1) for arg in args)
    code = main_in_process(*[f"{key}={value}" for key, value in options.items()])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1 and re.fullmatch(line, err.rstrip("\n")), err


@pytest.mark.parametrize("sweep, line", [
    (["shard_id=range(0,5)", "num_shards=4"], "error: shard_id must be in 0 .. num_shards - 1 = 3, got 4"),
    (["batch_size=1,x"], "error: batch_size: Value 'x' of type 'str' could not be converted to Integer"),
    (["feature_type=r21d,c3d"], "error: unknown feature_type 'c3d'; choose one of: r21d, slowfast, timesformer"),
])
def test_every_value_of_a_sweep_is_checked_before_any_job(sweep, line, tmp_path, capsys):
    video = fifo_video(tmp_path / "video.mp4")  # a job reading it would add a line of its own
    code = main_in_process(*["-m", *sweep, f"video_paths=[{video}]", "pretrained=false", "device=cpu"])
    assert code == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_fifo_video_shows_when_it_is_read(tmp_path, capsys):
    # the check above can fail: with good options the video is read, and its line comes
    video = fifo_video(tmp_path / "video.mp4")
    code = main_in_process(*[f"video_paths=[{video}]", "pretrained=false", "device=cpu"])
    assert code == 1
    assert f"error: {video}: not a regular file" in capsys.readouterr().err


def test_bf16_is_refused_on_a_cpu_without_bf16_units(monkeypatch, capsys):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_bf16": False})
    code = main_in_process(*[f"video_paths=[{SAMPLE_A}]", "pretrained=false", "device=cpu", "precision=bf16"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: precision=bf16: this CPU has no AVX512-BF16 or AMX units")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("device, cores, workers", [("cpu", 16, 1), ("cuda", 16, 15), ("cuda", 64, 16), ("cuda", 6, 5), ("cuda", 1, 1)])
def test_auto_decode_workers_leave_a_cpu_to_the_network_and_feed_a_gpu_from_every_other_core(device, cores, workers):
    from video_features.utils.video.pool import resolve_decode_workers

    assert resolve_decode_workers("auto", device, cores) == workers
    assert resolve_decode_workers(2, device, cores) == 2


def test_help_lists_every_option_with_its_default():
    from video_features.utils.options import OPTIONS

    result = run_cli("--help")
    assert result.returncode == 0
    for option in OPTIONS:
        assert f"  {option} " in result.stdout
    assert "  r21d: r2plus1d_18_16_kinetics, " in result.stdout and "[./output]" in result.stdout


def test_the_readme_lists_every_option_and_every_registered_model():
    from video_features.models.registry import families
    from video_features.utils.options import OPTIONS

    readme = (ROOT / "README.md").read_text()
    table = re.search(r"\| option \| default \| meaning \|\n\|---\|---\|---\|\n((?:\|.*\n)+)", readme).group(1)
    assert [row.split("|")[1].strip(" `") for row in table.splitlines()] == list(OPTIONS)
    for family in families().values():
        for checkpoint in family.checkpoints:
            assert f"| `{checkpoint.name}`" in readme, checkpoint.name


def test_equal_stems_in_different_folders_do_not_collide(cli, tmp_path):
    for folder in ("cat", "dog"):
        (tmp_path / "videos" / folder).mkdir(parents=True)
    shutil.copy(SAMPLE_A, tmp_path / "videos/cat/000.mp4")
    shutil.copy(SAMPLE_B, tmp_path / "videos/dog/000.mp4")
    code, _, _ = cli(f"video_paths=[{tmp_path}/videos/cat/000.mp4,{tmp_path}/videos/dog/000.mp4]",
                     "on_extraction=save_numpy", f"input_root={tmp_path}/videos")
    assert code == 0
    assert np.load(out_file(tmp_path, "cat/000", "r21d")).shape[0] == FRAME_COUNTS[SAMPLE_A] // 16
    assert np.load(out_file(tmp_path, "dog/000", "r21d")).shape[0] == FRAME_COUNTS[SAMPLE_B] // 16


def test_two_inputs_with_one_output_name_are_refused(cli, tmp_path):
    shutil.copy(SAMPLE_A, tmp_path / "x.mp4")
    shutil.copy(SAMPLE_A, tmp_path / "x.mkv")
    code, _, err = cli(f"video_paths=[{tmp_path}/x.mp4,{tmp_path}/x.mkv]", "on_extraction=save_numpy",
                       f"input_root={tmp_path}")
    assert code == 2 and "would write the same output files 'x_*'" in err


def test_batches_span_videos_and_give_the_same_features(r21d_checkpoint):
    one = make_extractor(weights_path=r21d_checkpoint, pretrained=True)
    three = make_extractor(weights_path=r21d_checkpoint, pretrained=True, batch_size=3)
    singles = list(one.extract_many([SAMPLE_A, SAMPLE_B]))
    batched = list(three.extract_many([SAMPLE_A, SAMPLE_B]))  # 8 + 9 windows: one batch holds both videos
    for a, b in zip(singles, batched):
        assert a.path == b.path
        np.testing.assert_allclose(a.outputs["r21d"], b.outputs["r21d"], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(a.outputs["timestamps_ms"], b.outputs["timestamps_ms"])


@pytest.mark.parametrize(
    "fps, stack, step, windows",
    [(5, 4, 4, 6), (5, 8, 4, 5), (10, 16, 16, 3), (2.5, 16, 16, 1)],
)
def test_windows_after_resampling(fps, stack, step, windows, r21d_checkpoint):
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True, extraction_fps=fps, stack_size=stack, step_size=step)
    outputs = extractor.extract(SAMPLE_A)  # 5.28 s: 26 frames at 5 fps, 53 at 10, 13 at 2.5
    assert outputs["r21d"].shape == (windows, 512)
    starts = np.arange(windows) * step / fps * 1000
    length = min(stack, round(5.28 * fps)) / fps * 1000  # the short 2.5 fps video is padded, not stretched
    np.testing.assert_allclose(outputs["timestamps_ms"], np.stack([starts, starts + length], 1), atol=1e-6)
    assert float(outputs["fps"]) == fps


def test_a_video_shorter_than_one_window_gives_one_padded_window(r21d_checkpoint):
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True, stack_size=200)
    with pytest.warns(UserWarning, match="132 frames is shorter than one window of 200"):
        outputs = extractor.extract(SAMPLE_A)
    assert outputs["r21d"].shape == (1, 512)
    np.testing.assert_allclose(outputs["timestamps_ms"], [[0, 5280]])


@needs_ffmpeg
@pytest.mark.parametrize("keep", [False, True])
def test_reencode_method_deletes_its_temporary_file_unless_asked(keep, tmp_path, r21d_checkpoint):
    options = dict(weights_path=r21d_checkpoint, pretrained=True, extraction_fps=5, stack_size=4, step_size=4)
    reencoded = make_extractor(**options, fps_method="reencode", tmp_path=str(tmp_path / "tmp"), keep_tmp_files=keep).extract(SAMPLE_A)
    filtered = make_extractor(**options).extract(SAMPLE_A)
    assert reencoded["r21d"].shape == filtered["r21d"].shape == (6, 512)
    np.testing.assert_array_equal(reencoded["timestamps_ms"], filtered["timestamps_ms"])
    # the same frames, but through a second lossy encode
    assert np.abs(reencoded["r21d"] - filtered["r21d"]).max() < 0.1 * np.abs(filtered["r21d"]).max()
    kept = os.listdir(tmp_path / "tmp")
    assert (len(kept) == 1 and kept[0].startswith("a_") and kept[0].endswith("_new_fps.mp4")) if keep else kept == []


@needs_ffmpeg
def test_a_reencoding_run_writes_nothing_outside_output_path(tmp_path, r21d_checkpoint):
    result = run_cli(f"video_paths=[{SAMPLE_A}]", f"weights_path={r21d_checkpoint}", "device=cpu", "extraction_fps=5",
                     "fps_method=reencode", "stack_size=4", "step_size=4", "on_extraction=save_numpy",
                     "output_path=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert list((tmp_path / "out" / ".tmp").iterdir()) == []  # the copy was removed


def test_show_pred_prints_the_top_classes_of_every_window(cli):
    code, out, _ = cli(f"video_paths=[{SAMPLE_B}]", "show_pred=true")
    assert code == 0
    rows = [line for line in out.splitlines() if line.strip().startswith(("0.00-", "0.53-"))]
    assert rows[0].strip().startswith("0.00-   0.53 s")
    assert len(rows[0].split(" | ")) == 5
    from video_features.utils.network.labels import kinetics400

    assert rows[0].split("s  ", 1)[1].rsplit(" ", 1)[0].split(" | ")[0].rsplit(" ", 1)[0] in kinetics400()


def test_print_shows_shapes_and_statistics(cli):
    code, out, _ = cli(f"video_paths=[{SAMPLE_B}]")
    assert code == 0
    assert f"  r21d: shape ({FRAME_COUNTS[SAMPLE_B] // 16}, 512)  min " in out
    assert "  timestamps_ms: shape (9, 2)" in out


def test_without_weights_offline_the_error_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, destination, hash_prefix=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as error:
        make_extractor(pretrained=True)
    message = str(error.value)
    for part in ("https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
                 str(tmp_path / "torch" / "hub" / "checkpoints" / "r2plus1d_18-91a641e6.pth"), "weights_path=", "pretrained=false"):
        assert part in message


def test_a_checkpoint_in_the_hub_cache_is_used(monkeypatch, tmp_path, r21d_checkpoint):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(r21d_checkpoint, tmp_path / "torch" / "hub" / "checkpoints" / "r2plus1d_18-91a641e6.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    extractor = make_extractor(pretrained=True)
    assert torch.equal(extractor.inference.network.fc.weight, torch.load(r21d_checkpoint)["fc.weight"])


def test_random_weights_only_on_request_and_with_a_warning():
    with pytest.warns(UserWarning, match="random weights"):
        make_extractor(pretrained=False)


def test_the_fast_path_gives_the_plain_path_features(r21d_checkpoint):
    options = dict(weights_path=r21d_checkpoint, pretrained=True)
    plain = make_extractor(**options)
    plain.inference.network.to(memory_format=torch.contiguous_format)
    plain.inference.channels_last = False
    plain = plain.extract(SAMPLE_B)
    # channels_last_3d, torch.compile with frozen weights, and a padded last batch (9 windows in 2s)
    fast = make_extractor(**options, compile=True, batch_size=2).extract(SAMPLE_B)
    np.testing.assert_allclose(fast["r21d"], plain["r21d"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fast["timestamps_ms"], plain["timestamps_ms"])
