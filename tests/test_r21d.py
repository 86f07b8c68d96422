import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.video import R2Plus1D_18_Weights, r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

from tests.conftest import FRAME_COUNTS, ROOT, SAMPLE_A, SAMPLE_B, cli, make_extractor, network_for, random_network
from tests.recipes import R21D_TOLERANCE as TOLERANCE
from tests.recipes import decoded_frames, r21d_recipe, reference_features
from video_features.models.r21d import KINETICS_PRESET
from video_features.utils.errors import WeightsError
from video_features.utils.frames.transforms import preprocess


def ig65m_release_network() -> VideoResNet:
    """The IG-65M R(2+1)D-34 of the moabitcoin/ig65m-pytorch release, from torchvision's pieces with
    the two changes its files have: the first block of layers 2-4 has its second (2+1)D conv with
    mid-planes 288, 576, 1152 (torchvision computes 230, 460, 921 from the block's input width), and
    every BatchNorm3d has eps 1e-3."""
    network = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem, num_classes=400)
    for layer, planes, midplanes in ((network.layer2, 128, 288), (network.layer3, 256, 576), (network.layer4, 512, 1152)):
        layer[0].conv2[0] = Conv2Plus1D(planes, planes, midplanes)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps = 1e-3
    return network


def test_r2plus1d_18_features_and_logits_equal_torchvision(r21d_checkpoint):
    reference = r2plus1d_18(weights=None).eval()
    reference.load_state_dict(torch.load(r21d_checkpoint))
    captured = {}
    reference.fc.register_forward_hook(lambda module, inputs, output: captured.update(features=inputs[0]))
    extractor = make_extractor(feature_type="r21d", weights_path=r21d_checkpoint, pretrained=True)
    clips = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected_logits = reference(clips)
        features, logits = extractor.inference.network(clips)
    assert features.shape == (2, 512)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(features, captured["features"], atol=1e-5, rtol=0)


def test_preprocessing_equals_torchvision_preset_on_float_frames():
    frames = torch.randint(0, 256, (16, 270, 480, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    preset = R2Plus1D_18_Weights.KINETICS400_V1.transforms()
    # the preset takes (T, C, H, W); float input in [0, 1] makes it resize floats, as video_features does
    expected = preset(frames.permute(0, 3, 1, 2).float() / 255)  # (C, T, 112, 112)
    ours = preprocess(frames, KINETICS_PRESET)  # (T, C, 112, 112)
    torch.testing.assert_close(ours.permute(1, 0, 2, 3), expected, atol=1e-5, rtol=0)


def test_ig65m_networks_have_the_release_layout():
    network = network_for("r21d", "r2plus1d_34_32_ig65m_ft_kinetics")
    state = network.state_dict()
    assert len(state) == 416
    assert sum(p.numel() for p in network.parameters()) == 63_697_175
    # mid-planes of the first block's second (2+1)D conv: 288, 576, 1152 (torchvision: 230, 460, 921)
    assert state["layer2.0.conv2.0.0.weight"].shape == (288, 128, 1, 3, 3)
    assert state["layer3.0.conv2.0.0.weight"].shape == (576, 256, 1, 3, 3)
    assert state["layer4.0.conv2.0.3.weight"].shape == (512, 1152, 3, 1, 1)
    assert state["layer2.0.conv1.0.0.weight"].shape == (230, 64, 1, 3, 3)
    assert state["fc.weight"].shape == (400, 512)
    assert {m.eps for m in network.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-3}


@pytest.mark.slow
def test_an_ig65m_release_file_loads_strict_and_gives_the_release_networks_features(tmp_path):
    release = random_network(ig65m_release_network, seed=3)
    state = release.state_dict()
    assert len(state) == 416 and sum(p.numel() for p in release.parameters()) == 63_697_175
    path = tmp_path / "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"
    torch.save(state, path)  # a bare state dict, as the release files are
    extractor = make_extractor(model_name="r2plus1d_34_8_ig65m_ft_kinetics", weights_path=str(path), stack_size=8,
                               step_size=64)
    features = extractor.extract(SAMPLE_B)["r21d"]  # windows at frames 0, 64, 128
    frames = decoded_frames(SAMPLE_B)
    clips = torch.stack([r21d_recipe(frames[start : start + 8]) for start in (0, 64, 128)])
    expected = reference_features(release, clips)
    assert features.shape == (3, 512)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)


def test_a_torchvision_layout_34_layer_checkpoint_is_refused(tmp_path):
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    plain = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)  # mid-planes 230...
    path = tmp_path / "wrong.pth"
    torch.save(plain.state_dict(), path)
    with pytest.raises(WeightsError, match=r"wrong\.pth does not fit this model: 18 wrong shape keys \(e\.g\. layer2\.0\.conv2\.0\.0\.weight"):
        make_extractor(model_name="r2plus1d_34_32_ig65m_ft_kinetics", weights_path=str(path), pretrained=True)


@pytest.mark.parametrize("path", [SAMPLE_A, SAMPLE_B])
def test_extracts_the_samples(path, r21d_checkpoint):
    extractor = make_extractor(weights_path=r21d_checkpoint, pretrained=True)
    outputs = extractor.extract(path)
    fps = {SAMPLE_A: 25.0, SAMPLE_B: 30000 / 1001}[path]
    windows = FRAME_COUNTS[path] // 16
    assert outputs["r21d"].shape == (windows, 512) and outputs["r21d"].dtype == np.float32
    starts = np.arange(windows) * 16 / fps * 1000
    np.testing.assert_allclose(outputs["timestamps_ms"], np.stack([starts, starts + 16 / fps * 1000], 1), atol=0.05)
    assert float(outputs["fps"]) == pytest.approx(fps)


@pytest.mark.slow
def test_features_through_the_command_line_equal_torchvision_on_the_published_recipe(r21d_checkpoint, tmp_path):
    code = cli(*[f"video_paths=[{SAMPLE_B}]", f"weights_path={r21d_checkpoint}", "device=cpu",
                 "on_extraction=save_numpy", f"output_path={tmp_path}", f"input_root={ROOT / 'sample'}"])
    assert code == 0
    features = np.load(tmp_path / "r21d" / "r2plus1d_18_16_kinetics" / "b_r21d.npy")
    reference = r2plus1d_18(weights=None)
    reference.load_state_dict(torch.load(r21d_checkpoint))
    frames = decoded_frames(SAMPLE_B)
    assert len(frames) == 158
    clips = torch.stack([r21d_recipe(frames[start : start + 16]) for start in range(0, 158 - 16 + 1, 16)])
    expected = reference_features(reference, clips)
    assert features.shape == expected.shape == (9, 512)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
