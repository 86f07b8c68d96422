"""TimeSformer: parity with Hugging Face transformers, embedding interpolation, loading, sampling, end to end.

transformers is the test-only reference: its TimeSformer matches the official one with converted
weights, but it assumes config.num_frames and config.image_size inside every layer, so at another
T or crop it is compared with a model built for that size whose embeddings are set to the
official nearest-interpolated ones.
"""
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.video import R2Plus1D_18_Weights
from transformers import TimesformerConfig, TimesformerForVideoClassification

from tests.conftest import ROOT, SAMPLE_B, cli, make_extractor, randomize
from tests.recipes import decoded_frames, timesformer_recipe
from video_features.models.registry import load_family
from video_features.models.timesformer.network import TimeSformer
from video_features.utils.errors import WeightsError
from video_features.utils.extractor import Extractor
from video_features.utils.frames.transforms import preprocess
from video_features.utils.frames.windows import linspace_offsets, network_offsets, segment_middle_offsets
from video_features.utils.network.labels import class_names
from video_features.utils.network.weights import hub_cache_path, load_strict

TIMESFORMER = load_family("timesformer", "video_features.models.timesformer")

SMALL = dict(patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)

# Features through the command line equal transformers' on the official recipe within this (fp32 on
# a CPU; measured here: largest difference 4.9e-7, features up to 0.68: our attention is torch's
# scaled_dot_product_attention, transformers' a plain softmax(QK^T)V, so 1e-6 would leave a 2x margin).
TOLERANCE = 2e-6

# The release's key names (facebookresearch/TimeSformer) and transformers' for the same tensors.
RELEASE_KEYS = {
    "cls_token": "timesformer.embeddings.cls_token",
    "pos_embed": "timesformer.embeddings.position_embeddings",
    "time_embed": "timesformer.embeddings.time_embeddings",
    "patch_embed.proj": "timesformer.embeddings.patch_embeddings.projection",
    "norm": "timesformer.layernorm",
    "head": "classifier",
}
RELEASE_BLOCK_KEYS = {  # blocks.{i}.KEY of the release: timesformer.encoder.layer.{i}.VALUE of transformers
    "norm1": "layernorm_before",
    "attn.qkv": "attention.attention.qkv",
    "attn.proj": "attention.output.dense",
    "temporal_norm1": "temporal_layernorm",
    "temporal_attn.qkv": "temporal_attention.attention.qkv",
    "temporal_attn.proj": "temporal_attention.output.dense",
    "temporal_fc": "temporal_dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def release_state(hf_state: dict) -> dict:
    """transformers' weights under the release's key names (before its ``model.`` prefix)."""
    depth = 1 + max(int(key.split(".")[3]) for key in hf_state if key.startswith("timesformer.encoder.layer."))
    names = dict(RELEASE_KEYS)
    for block in range(depth):
        names.update({f"blocks.{block}.{ours}": f"timesformer.encoder.layer.{block}.{theirs}"
                      for ours, theirs in RELEASE_BLOCK_KEYS.items()})
    state = {}
    for release, hf in names.items():
        for suffix in ("", ".weight", ".bias"):
            if hf + suffix in hf_state:
                state[release + suffix] = hf_state[hf + suffix]
    assert len(state) == len(hf_state), "a tensor of transformers' model has no release name"
    return state


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
    return release_state(hf_base.state_dict())


@pytest.fixture(scope="module")
def official_file(official_state, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("official") / "TimeSformer_divST_8x32_224_K400.pyth"
    torch.save({"model_state": {"model." + k: v for k, v in official_state.items()}}, path)  # the release layout
    return str(path)


@pytest.fixture(scope="module")
def official_extractor(official_file) -> Extractor:
    return make_extractor(feature_type="timesformer", weights_path=official_file)


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
    load_strict(ours, release_state(hf.state_dict()), "small HF model")
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
    code = cli(*["feature_type=timesformer", "stack_size=4", f"video_paths=[{SAMPLE_B}]", "pretrained=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [
        "error: stack_size=4 is too short for timesformer_divst_8x32_224_k400: a window must hold at least the 8 "
        "frames the network sees"
    ]


# ---- end to end ----------------------------------------------------------------------------------
KINETICS400 = R2Plus1D_18_Weights.KINETICS400_V1.meta["categories"]  # torchvision's list, offline


def sample_b_clips(starts, spatial_index=1) -> torch.Tensor:
    """The clips of 64-frame windows of sample b: linspace(0, 63, 8) = 0, 9, ..., 63 of each window."""
    frames = decoded_frames(SAMPLE_B)
    return torch.stack([timesformer_recipe(frames[start + np.arange(0, 64, 9)], spatial_index=spatial_index)
                        for start in starts])


@pytest.mark.slow
def test_features_through_the_command_line_equal_transformers_on_the_official_recipe(hf_base, official_file, tmp_path,
                                                                                     capsys):
    code = cli(*["feature_type=timesformer", f"weights_path={official_file}", "stack_size=64", "step_size=64",
                 "batch_size=2", f"video_paths=[{SAMPLE_B}]", "device=cpu", "show_pred=true",
                 "on_extraction=save_numpy", f"output_path={tmp_path}", f"input_root={ROOT / 'sample'}"])
    assert code == 0
    folder = tmp_path / "timesformer" / "timesformer_divst_8x32_224_k400"
    features = np.load(folder / "b_timesformer.npy")
    expected, logits = hf_features_and_logits(hf_base, sample_b_clips([0, 64]))  # (158 - 64) // 64 + 1 windows
    assert features.shape == (2, 768) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected.numpy(), atol=TOLERANCE, rtol=0)
    fps = 30000 / 1001
    starts = np.array([0, 64]) / fps * 1000
    np.testing.assert_allclose(np.load(folder / "b_timestamps_ms.npy"), np.stack([starts, starts + 64 / fps * 1000], 1),
                               atol=0.05)
    # show_pred: the head's top 5 Kinetics-400 classes of each window, with their probabilities
    printed = capsys.readouterr().out.split(f"{SAMPLE_B}: top-5 classes per window\n", 1)[1].splitlines()[:2]
    probabilities = logits.softmax(-1)
    for line, row in zip(printed, probabilities):
        shown = [entry.rsplit(" ", 1) for entry in line.split(" s  ", 1)[1].split(" | ")]
        top = row.topk(5)
        assert [label for label, _ in shown] == [KINETICS400[i] for i in top.indices]
        np.testing.assert_allclose([float(p) for _, p in shown], top.values.numpy(), atol=6e-4)


@pytest.mark.slow
def test_three_crops_saved_as_pickle_equal_transformers_on_the_official_three_views(hf_base, official_file, tmp_path):
    code = cli(*["feature_type=timesformer", f"weights_path={official_file}", "crops=3", "stack_size=64",
                 "step_size=200", f"video_paths=[{SAMPLE_B}]", "device=cpu", "on_extraction=save_pickle",
                 f"output_path={tmp_path}", f"input_root={ROOT / 'sample'}"])
    assert code == 0
    folder = tmp_path / "timesformer" / "timesformer_divst_8x32_224_k400"
    with open(folder / "b_timesformer.pkl", "rb") as file:
        features = pickle.load(file)
    # 270x480 -> 224x398: the left (x 0), middle (ceil(174 / 2) = 87) and right (174) crops of one window
    views = torch.cat([sample_b_clips([0], spatial_index=index) for index in range(3)])
    expected, _ = hf_features_and_logits(hf_base, views)
    assert features.shape == (1, 3, 768)
    np.testing.assert_allclose(features[0], expected.numpy(), atol=TOLERANCE, rtol=0)
    with open(folder / "b_timestamps_ms.pkl", "rb") as file:
        np.testing.assert_allclose(pickle.load(file), [[0, 64 / (30000 / 1001) * 1000]], atol=0.05)


def test_the_official_weights_are_cached_under_their_release_name():
    url = TIMESFORMER.checkpoint("timesformer_divst_8x32_224_k400").url  # a Dropbox link ending in ?dl=1
    assert hub_cache_path(url).endswith("/checkpoints/TimeSformer_divST_8x32_224_K400.pyth")
