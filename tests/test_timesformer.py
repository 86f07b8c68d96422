"""TimeSformer: parity with Hugging Face transformers, embedding interpolation, loading, sampling, end to end.

transformers is the test-only reference: its TimeSformer matches the official one with converted
weights, but it assumes config.num_frames and config.image_size inside every layer, so at another
T or crop it is compared with a model built for that size whose embeddings are set to the
official nearest-interpolated ones.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import TimesformerConfig, TimesformerForVideoClassification

from main import main
from models.registry import load_family
from models.timesformer.network import TimeSformer, from_hf_layout
from tests.conftest import ROOT, SAMPLE_B, make_config, make_extractor, randomize
from utils.extractor import Extractor
from utils.labels import class_names, kinetics400
from utils.run import Run
from utils.weights import WeightsError, hub_cache_path, load_strict
from utils.transforms import preprocess
from utils.windows import linspace_offsets, network_offsets, segment_middle_offsets

TIMESFORMER = load_family("timesformer", "models.timesformer")

SMALL = dict(patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)


def hf_features_and_logits(hf: TimesformerForVideoClassification, clips: torch.Tensor):
    """The classifier's own path: classifier(last_hidden_state[:, 0]); HF takes (B, T, C, H, W)."""
    with torch.inference_mode():
        features = hf.timesformer(clips.transpose(1, 2)).last_hidden_state[:, 0]
        return features, hf.classifier(features)


def assert_same_outputs(ours, hf: TimesformerForVideoClassification, clips: torch.Tensor) -> torch.Tensor:
    """Our features and logits equal HF's within 1e-5; returns our features."""
    with torch.inference_mode():
        features, logits = ours(clips)
    expected_features, expected_logits = hf_features_and_logits(hf, clips)
    torch.testing.assert_close(features, expected_features, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    return features


def clip(frames: int, size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


# ---- full size: one random base model, written as an HF file and as an official .pyth --------------
@pytest.fixture(scope="module")
def hf_base():
    return randomize(TimesformerForVideoClassification(TimesformerConfig(num_labels=400)), seed=4).eval()


@pytest.fixture(scope="module")
def hf_file(hf_base, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hf") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in hf_base.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def official_state(hf_base) -> dict:
    return from_hf_layout(hf_base.state_dict())


@pytest.fixture(scope="module")
def official_file(official_state, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("official") / "TimeSformer_divST_8x32_224_K400.pyth"
    torch.save({"model_state": {"model." + k: v for k, v in official_state.items()}}, path)  # the release layout
    return str(path)


@pytest.fixture(scope="module")
def e2e_output(tmp_path_factory):
    return tmp_path_factory.mktemp("out")


@pytest.fixture(scope="module")
def official_extractor(official_file, e2e_output) -> Extractor:
    cfg = make_config(
        feature_type="timesformer", weights_path=official_file, pretrained=True,
        stack_size=64, step_size=64, batch_size=2, video_paths=[SAMPLE_B], input_root=str(ROOT / "sample"),
        show_pred=True, on_extraction="save_numpy", output_path=str(e2e_output),
    )
    extractor = Extractor(cfg)
    extractor.cfg = cfg  # for the end-to-end run
    return extractor


@pytest.mark.slow
def test_the_network_has_the_official_layout(official_extractor):
    state = official_extractor.inference.network.state_dict()
    assert len(state) == 249
    assert state["pos_embed"].shape == (1, 197, 768) and state["time_embed"].shape == (1, 8, 768)
    assert state["blocks.11.temporal_fc.weight"].shape == (768, 768)
    assert state["blocks.0.attn.qkv.bias"].shape == (2304,)
    assert state["head.weight"].shape == (400, 768)


@pytest.mark.slow
def test_an_official_pyth_loads_strict_through_weights_path(official_extractor, official_state):
    loaded = official_extractor.inference.network.state_dict()
    assert loaded.keys() == official_state.keys()
    assert all(torch.equal(loaded[k], official_state[k]) for k in official_state)
    white = torch.full((1, 224, 224, 3), 255, dtype=torch.uint8)
    torch.testing.assert_close(official_extractor.preprocess(white), torch.full((1, 3, 224, 224), (1 - 0.45) / 0.225))


@pytest.mark.slow
def test_an_hf_checkpoint_equals_transformers_at_8_frames_224_and_switches_normalisation(hf_base, hf_file):
    extractor = make_extractor(feature_type="timesformer", weights_path=hf_file, pretrained=True)
    clips = clip(8, 224)
    features, logits = extractor.inference(clips)
    expected_features, expected_logits = hf_features_and_logits(hf_base, clips)
    assert features.shape == (1, 768) and logits.shape == (1, 400)
    torch.testing.assert_close(features, expected_features, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    white = torch.full((1, 224, 224, 3), 255, dtype=torch.uint8)
    torch.testing.assert_close(extractor.preprocess(white), torch.ones(1, 3, 224, 224))  # (1 - 0.5) / 0.5


@pytest.mark.slow
def test_a_checkpoint_of_another_head_is_refused(official_file):
    refusal = r"does not fit this model: 2 wrong shape keys \(e\.g\. head\.weight, head\.bias\)"
    with pytest.raises(WeightsError, match=refusal):
        make_extractor(feature_type="timesformer", model_name="timesformer_divst_8x32_224_k600", weights_path=official_file, pretrained=True)


# ---- small random configs: the official interpolation at another T and another crop ---------------
def small_pair(frames: int, size: int, seed: int):
    config = TimesformerConfig(num_frames=frames, image_size=size, num_labels=7, **SMALL)
    hf = randomize(TimesformerForVideoClassification(config), seed)
    ours = TimeSformer(num_classes=7, img_size=size, num_frames=frames, dim=64, depth=2, heads=4).eval()
    load_strict(ours, from_hf_layout(hf.state_dict()), "small HF model")
    return hf.eval(), ours


def hf_built_for(hf: TimesformerForVideoClassification, replaced: dict, **config) -> TimesformerForVideoClassification:
    """An HF model built for another T or size, with hf's weights and the given embeddings."""
    other = TimesformerForVideoClassification(TimesformerConfig(num_labels=7, **SMALL, **config)).eval()
    other.load_state_dict({**hf.state_dict(), **replaced})
    return other


def test_small_config_equals_transformers_at_its_own_size():
    hf, ours = small_pair(frames=4, size=64, seed=5)
    assert_same_outputs(ours, hf, clip(4, 64, batch=2))


def test_16_frames_on_8_frame_weights_repeat_each_time_embedding_twice():
    hf, ours = small_pair(frames=8, size=64, seed=6)
    time_embed = hf.state_dict()["timesformer.embeddings.time_embeddings"]
    nearest = time_embed[:, [t // 2 for t in range(16)]]  # nearest from 8 to 16: 0 0 1 1 2 2 ...
    reference = hf_built_for(hf, {"timesformer.embeddings.time_embeddings": nearest}, num_frames=16, image_size=64)
    clips = clip(16, 64, batch=2, seed=1)
    features = assert_same_outputs(ours, reference, clips)
    assert features.shape == (2, 64)
    # the HF model built for 8 frames runs on 16 without an error, but not as the official code does
    assert (hf_features_and_logits(hf, clips)[0] - features).abs().max() > 1e-4


def test_a_larger_crop_resizes_the_position_grid_nearest():
    hf, ours = small_pair(frames=4, size=64, seed=7)  # a 4x4 patch grid
    pos = hf.state_dict()["timesformer.embeddings.position_embeddings"]  # (1, 1 + 16, D)
    grid = pos[0, 1:].reshape(4, 4, -1)
    rows = [0, 0, 1, 2, 2, 3]  # nearest from 4 to 6: floor(i * 4 / 6)
    resized = grid[rows][:, rows].reshape(1, 36, -1)
    replaced = {"timesformer.embeddings.position_embeddings": torch.cat([pos[:, :1], resized], 1)}
    reference = hf_built_for(hf, replaced, num_frames=4, image_size=96)
    assert_same_outputs(ours, reference, clip(4, 96, seed=2))


# ---- windows and preprocessing -------------------------------------------------------------------
def test_kinetics_windows_take_linspace_frames():
    # linspace(0, 255, 8) = 0, 36.4, 72.9, 109.3, 145.7, 182.1, 218.6, 255, truncated
    assert linspace_offsets(256, 8) == [0, 36, 72, 109, 145, 182, 218, 255]
    assert TIMESFORMER.checkpoint("timesformer_divst_8x32_224_k400").stack_size == 256
    assert TIMESFORMER.checkpoint("timesformer_divst_96x4_224_k600").stack_size == 384
    assert TIMESFORMER.checkpoint("timesformer_divst_16x16_448_k400").step_size == 256


def test_ssv2_windows_take_the_middle_frame_of_each_segment():
    # segment size 127 / 8 = 15.875; bounds round to 0 16 32 48 64 79 95 111 127 (63.5 -> 64)
    assert segment_middle_offsets(128, 8) == [8, 24, 40, 56, 71, 87, 103, 119]
    # segment size 9 / 4 = 2.25: 4.5 rounds to 4 (half to even, as numpy's round in the official loader)
    assert segment_middle_offsets(10, 4) == [1, 3, 5, 8]
    assert TIMESFORMER.checkpoint("timesformer_divst_64_224_ssv2").stack_size == 128


def test_ssv2_models_see_bgr_and_name_their_174_classes():
    checkpoint = TIMESFORMER.checkpoint("timesformer_divst_8_224_ssv2")
    offsets = network_offsets(checkpoint.stack_size, checkpoint.num_frames, checkpoint.sampling)
    assert offsets == (8, 24, 40, 56, 71, 87, 103, 119)
    red = torch.zeros(1, 224, 224, 3, dtype=torch.uint8)
    red[..., 0] = 255
    out = preprocess(red, checkpoint.preprocessing)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([-0.45, -0.45, 0.55]) / 0.225)
    names = class_names(checkpoint.classes)
    assert len(names) == 174 and len(set(names)) == 174
    assert names[67] == "Pretending to open something without actually opening it"


def test_k600_class_names():
    classes = class_names(TIMESFORMER.checkpoint("timesformer_divst_8x32_224_k600").classes)
    assert len(classes) == 600 and classes == sorted(classes) and len(set(classes)) == 600
    assert "eating spaghetti" in classes


@pytest.mark.slow
def test_preprocessing_is_short_side_resize_and_the_ceil_centre_crop(official_extractor):
    frames = torch.randint(0, 256, (2, 270, 479, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    # short side 270 -> 224, long side floor(479 / 270 * 224) = 397; margin 173, offset ceil(86.5) = 87
    floats = frames.permute(0, 3, 1, 2).float() / 255
    resized = F.interpolate(floats, size=(224, 397), mode="bilinear", align_corners=False)
    expected = (resized[:, :, :, 87 : 87 + 224] - 0.45) / 0.225
    torch.testing.assert_close(official_extractor.preprocess(frames), expected, atol=1e-5, rtol=0)


def test_a_window_shorter_than_the_network_frames_is_refused_at_start_up(capsys):
    code = main(["feature_type=timesformer", "stack_size=4", f"video_paths=[{SAMPLE_B}]", "pretrained=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        "error: stack_size=4 is too short for timesformer_divst_8x32_224_k400: a window must hold at least the 8 "
        "frames the network sees"
    ]


# ---- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_extracts_a_sample_with_predictions(official_extractor, e2e_output, capsys):
    assert official_extractor.plan.offsets == (0, 9, 18, 27, 36, 45, 54, 63)  # linspace(0, 63, 8)
    summary = Run(official_extractor.cfg, official_extractor)()
    assert (summary.extracted, summary.failed) == (1, 0)
    folder = e2e_output / "timesformer" / "timesformer_divst_8x32_224_k400"
    features = np.load(folder / "b_timesformer.npy")
    fps = 30000 / 1001
    windows = (158 - 64) // 64 + 1
    assert features.shape == (windows, 768) and features.dtype == np.float32
    assert np.isfinite(features).all()
    starts = np.arange(windows) * 64 / fps * 1000
    expected_times = np.stack([starts, starts + 64 / fps * 1000], 1)
    np.testing.assert_allclose(np.load(folder / "b_timestamps_ms.npy"), expected_times, atol=0.05)
    printed = capsys.readouterr().out
    lines = printed.split("top-5 classes per window\n", 1)[1].splitlines()[:windows]
    classes = set(kinetics400())
    for line in lines:
        labels = [entry.rsplit(" ", 1)[0].strip() for entry in line.split("s  ", 1)[1].split(" | ")]
        assert len(labels) == 5 and all(label in classes for label in labels)


def test_the_official_weights_are_cached_under_their_release_name():
    url = TIMESFORMER.checkpoint("timesformer_divst_8x32_224_k400").url  # a Dropbox link ending in ?dl=1
    assert hub_cache_path(url).endswith("/checkpoints/TimeSformer_divST_8x32_224_K400.pyth")
