"""SlowFast against pytorchvideo 0.1.5 (test-only) and its hub tutorial's preprocessing."""
import pickle
import shutil
import subprocess
import urllib.error
import warnings

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorchvideo.models import hub

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B, cli, make_extractor, needs_ffmpeg, network_for, random_network
from tests.recipes import decoded_frames, uniform_crop_box
from video_features.models.registry import load_family
from video_features.models.slowfast import TUTORIAL
from video_features.models.slowfast.network import slow_pathway_indices
from video_features.utils.errors import WeightsError
from video_features.utils.frames.transforms import preprocess
from video_features.utils.frames.windows import network_offsets
from video_features.utils.network.labels import kinetics400

with warnings.catch_warnings():  # deprecated, but it is exactly what the tutorial uses
    warnings.simplefilter("ignore")
    from torchvision.transforms._transforms_video import CenterCropVideo, NormalizeVideo

# Features through the command line equal pytorchvideo's on the tutorial's recipe within this (fp32 on
# a CPU, conftest.random_network's weights, features up to ~2; measured here: largest difference
# 3.6e-7, also with three crops at extraction_fps=15).
TOLERANCE = 2e-6

R50_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"


def pytorchvideo_reference(builder, seed):
    """A pytorchvideo hub network with random weights and BN statistics, and a hook on its head
    that records the pooled map (its features before proj)."""
    network = random_network(lambda: builder(pretrained=False), seed).eval()
    captured = {}
    network.blocks[6].register_forward_hook(lambda module, inputs, output: captured.update(pooled=inputs[0]))
    return network, captured


def run_reference(network, fast: torch.Tensor) -> torch.Tensor:
    """The tutorial's PackPathway + forward; pytorchvideo overwrites the list, so give it a fresh one."""
    slow = fast.index_select(2, torch.linspace(0, fast.shape[2] - 1, fast.shape[2] // 4).long())
    with torch.inference_mode():
        return network([slow, fast])


def tutorial_transform(frames: np.ndarray, num_frames: int = 32, spatial_index=None) -> torch.Tensor:
    """pytorchvideo's hub tutorial on (T, H, W, 3) uint8 frames -> (3, num_frames, 256, 256):
    UniformTemporalSubsample, /255, NormalizeVideo, ShortSideScale (F.interpolate), CenterCropVideo;
    with ``spatial_index`` PySlowFast's uniform_crop in place of the centre crop (the 3-view test)."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float()
    video = video[:, torch.linspace(0, video.shape[1] - 1, num_frames).long()] / 255
    video = NormalizeVideo((0.45,) * 3, (0.225,) * 3)(video)
    height, width = video.shape[-2:]
    size = (int(height / width * 256), 256) if width < height else (256, int(width / height * 256))
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    if spatial_index is None:
        return CenterCropVideo(256)(video)
    rows, columns = uniform_crop_box(*size, 256, spatial_index)
    return video[..., rows, columns]


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    """pytorchvideo's R50 with random weights, and the same weights in the official file layout."""
    network, captured = pytorchvideo_reference(hub.slowfast_r50, seed=1)
    path = tmp_path_factory.mktemp("weights") / "SLOWFAST_8x8_R50.pyth"
    torch.save({"model_state": network.state_dict(), "epoch": 196}, path)
    return network, captured, str(path)


@pytest.mark.slow
def test_r50_features_and_logits_equal_pytorchvideo(r50):
    reference, captured, checkpoint = r50
    extractor = make_extractor(feature_type="slowfast", weights_path=checkpoint, pretrained=True)
    # strict the other way round too: our state dict is pytorchvideo's
    hub.slowfast_r50(pretrained=False).load_state_dict(extractor.inference.network.state_dict(), strict=True)
    # the smallest input the head takes is 32x224x224; 224x256 leaves 1x2 pooled positions to average
    clips = torch.randn(1, 3, 32, 224, 256, generator=torch.Generator().manual_seed(0))
    original = clips.clone()
    with torch.inference_mode():
        features, logits = extractor.inference.network(clips)
    assert torch.equal(clips, original)
    expected_logits = run_reference(reference, clips)
    assert captured["pooled"].shape == (1, 2304, 1, 1, 2)
    assert features.shape == (1, 2304) and logits.shape == (1, 400)
    torch.testing.assert_close(features, captured["pooled"].mean((2, 3, 4)), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_r101_equals_pytorchvideo_from_a_bare_state_dict(tmp_path):
    reference, captured = pytorchvideo_reference(hub.slowfast_r101, seed=2)
    path = tmp_path / "slowfast_r101.pth"
    torch.save(reference.state_dict(), path)  # a bare state dict loads too
    extractor = make_extractor(feature_type="slowfast", model_name="slowfast_r101", weights_path=str(path), pretrained=True)
    clips = torch.randn(1, 3, 32, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        features, logits = extractor.inference.network(clips)
    expected_logits = run_reference(reference, clips)
    torch.testing.assert_close(features, captured["pooled"].flatten(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_16x8_r101_50_50_equals_pytorchvideo():
    reference, captured = pytorchvideo_reference(hub.slowfast_16x8_r101_50_50, seed=3)
    ours = network_for("slowfast", "slowfast_16x8_r101_50_50").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    hub.slowfast_16x8_r101_50_50(pretrained=False).load_state_dict(ours.state_dict(), strict=True)
    state = ours.state_dict()
    assert sum(p.numel() for p in ours.parameters()) == 53_774_808
    # temporal conv_a only in the first 6 of res4's 23 blocks, in both pathways
    assert state["blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_a.weight"].shape[2] == 3
    assert state["blocks.3.multipathway_blocks.1.res_blocks.6.branch2.conv_a.weight"].shape[2] == 1
    assert [pool.kernel_size for pool in ours.blocks[5].pool] == [(16, 7, 7), (64, 7, 7)]
    clips = torch.randn(1, 3, 64, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        features, logits = ours(clips)
    torch.testing.assert_close(logits, run_reference(reference, clips), atol=1e-5, rtol=0)
    torch.testing.assert_close(features, captured["pooled"].flatten(1), atol=1e-5, rtol=0)


def test_r50_layout():
    network = network_for("slowfast", "slowfast_r50")
    assert len(network.state_dict()) == 662
    assert sum(p.numel() for p in network.parameters()) == 34_566_488
    assert network.state_dict()["blocks.1.multipathway_fusion.conv_fast_to_slow.weight"].shape == (64, 32, 7, 1, 1)


def test_slow_pathway_indices():
    assert slow_pathway_indices(32).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_pathway_indices(64).tolist() == [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46, 50, 54, 58, 63]


@pytest.mark.parametrize(
    "model_name, stack, expected",
    [
        ("slowfast_r50", None, list(range(0, 62, 2)) + [63]),  # the default window: 64 -> 32
        ("slowfast_r50", 32, list(range(32))),
        # floor(i * 99 / 31), i = 0 .. 31
        ("slowfast_r101", 100, [0, 3, 6, 9, 12, 15, 19, 22, 25, 28, 31, 35, 38, 41, 44, 47, 51, 54, 57, 60, 63, 67, 70,
                                73, 76, 79, 83, 86, 89, 92, 95, 99]),
        ("slowfast_16x8_r101_50_50", None, list(range(0, 126, 2)) + [127]),  # default: 128 -> 64, as 64 -> 32
    ],
)
def test_windows_are_subsampled_uniformly(model_name, stack, expected):
    checkpoint = load_family("slowfast", "video_features.models.slowfast").checkpoint(model_name)
    stack = stack or checkpoint.stack_size
    assert list(network_offsets(stack, checkpoint.num_frames, checkpoint.sampling)) == expected


def test_a_window_too_short_fails_at_start_up_with_one_line(capsys):
    code = cli(*["feature_type=slowfast", "stack_size=16", "device=cpu", "pretrained=false", f"video_paths=[{SAMPLE_B}]"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "error: stack_size=16 is too short for slowfast_r50: a window must hold at least the 32 frames "
        "the network sees\n"
    )


@pytest.mark.parametrize("height, width", [(255, 456), (457, 255), (271, 481)])
def test_preprocessing_equals_the_tutorial_on_odd_sized_frames(height, width):
    frames = torch.randint(0, 256, (4, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = preprocess(frames, load_family("slowfast", "video_features.models.slowfast").default.preprocessing)  # (T, C, 256, 256)
    expected = tutorial_transform(frames.numpy(), num_frames=4)  # (C, T, 256, 256)
    torch.testing.assert_close(ours.permute(1, 0, 2, 3), expected, atol=1e-5, rtol=0)


def test_crop_offset_rounds_half_to_even_as_center_crop_video_does():
    # 255x456 -> 256x457: a margin of 201; CenterCropVideo's round(100.5) is 100 (uniform_crop's ceil: 101)
    geometry = TUTORIAL.geometry(255, 456)
    assert geometry.resize_hw == (256, 457) and geometry.top_left == (0, 100) and geometry.crop_hw == (256, 256)
    assert TUTORIAL.geometry(457, 255).top_left == (101, 0)


@pytest.mark.slow
def test_offline_without_weights_says_what_to_do_and_a_cached_file_is_used(monkeypatch, tmp_path, r50):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, destination, hash_prefix=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError, match="cannot download " + R50_URL.replace(".", r"\.")):
        make_extractor(feature_type="slowfast", pretrained=True)
    shutil.copy(r50[2], tmp_path / "torch" / "hub" / "checkpoints" / "SLOWFAST_8x8_R50.pyth")
    extractor = make_extractor(feature_type="slowfast", pretrained=True)
    assert torch.equal(extractor.inference.network.blocks[6].proj.weight, r50[0].blocks[6].proj.weight)


@pytest.mark.slow
def test_end_to_end_on_the_samples_with_show_pred(r50, tmp_path, capsys):
    reference, captured, checkpoint = r50
    out = tmp_path / "out"
    code = cli(*[
        "feature_type=slowfast", f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", f"input_root={ROOT / 'sample'}",
        f"weights_path={checkpoint}",
        "device=cpu", "on_extraction=save_numpy", f"output_path={out}", "show_pred=true",
    ])
    stdout = capsys.readouterr().out
    assert code == 0
    folder = out / "slowfast" / "slowfast_r50"
    for name, fps in (("a", 25.0), ("b", 30000 / 1001)):
        features = np.load(folder / f"{name}_slowfast.npy")
        assert features.shape == (2, 2304) and features.dtype == np.float32  # 132 and 158 frames: 2 windows of 64
        starts = np.array([0, 64]) / fps * 1000
        np.testing.assert_allclose(np.load(folder / f"{name}_timestamps_ms.npy"), np.stack([starts, starts + 64 / fps * 1000], 1), atol=0.05)
        assert float(np.load(folder / f"{name}_fps.npy")) == pytest.approx(fps)
    # show_pred: per video a header, then one row of 5 Kinetics classes per window
    for path in (SAMPLE_A, SAMPLE_B):
        lines = stdout.split(f"{path}: top-5 classes per window\n", 1)[1].splitlines()[:2]
        for line in lines:
            labels = [entry.rsplit(" ", 1)[0] for entry in line.split(" s  ", 1)[1].split(" | ")]
            assert len(labels) == 5 and set(labels) <= set(kinetics400())

    # the first window of b, decoded and transformed as the tutorial does, through pytorchvideo
    with av.open(SAMPLE_B) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(64), container.decode(video=0))])
    run_reference(reference, tutorial_transform(frames)[None])
    expected = captured["pooled"].mean((2, 3, 4))[0].numpy()
    np.testing.assert_allclose(np.load(folder / "b_slowfast.npy")[0], expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
@needs_ffmpeg
def test_three_crops_with_extraction_fps_saved_as_pickle_equal_pytorchvideo(r50, tmp_path):
    reference, captured, checkpoint = r50
    out = tmp_path / "out"
    code = cli(*["feature_type=slowfast", f"weights_path={checkpoint}", "device=cpu", "crops=3", "extraction_fps=15",
                 "stack_size=32", "step_size=64", f"video_paths=[{SAMPLE_B}]", "on_extraction=save_pickle",
                 f"output_path={out}", f"input_root={ROOT / 'sample'}"])
    assert code == 0
    saved = {}
    for key in ("slowfast", "timestamps_ms", "fps"):
        with open(out / "slowfast" / "slowfast_r50" / f"b_{key}.pkl", "rb") as file:
            saved[key] = pickle.load(file)
    # the frames the ffmpeg program's fps filter keeps, in a lossless copy (-qp 0)
    resampled = tmp_path / "b_15fps.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", SAMPLE_B, "-vf", "fps=fps=15", "-c:v", "libx264", "-qp", "0",
                    "-pix_fmt", "yuv420p", "-an", str(resampled)], check=True)
    frames = decoded_frames(str(resampled))
    assert len(frames) == 79  # 5.27 s at 15 fps
    # one window of 32 frames, all seen: (79 - 32) // 64 + 1 = 1; 270x480 -> 256x455, crops at x 0, 100, 199
    run_reference(reference, torch.stack([tutorial_transform(frames[:32], spatial_index=index) for index in range(3)]))
    expected = captured["pooled"].mean((2, 3, 4)).numpy()
    assert saved["slowfast"].shape == (1, 3, 2304)
    np.testing.assert_allclose(saved["slowfast"][0], expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(saved["timestamps_ms"], [[0, 32 / 15 * 1000]], atol=1e-6)
    assert float(saved["fps"]) == 15.0
