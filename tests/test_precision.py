"""Reduced precision: bf16 autocast features against fp32, on the same weights and video."""
import numpy as np
import pytest
import torch

from tests.conftest import SAMPLE_B, make_extractor, network_for, randomize
from video_features.utils.network.precision import cast_autocast_weights, cpu_has_bf16_units

# The tolerance the README states: relative L2 error of each window's feature vector, bf16
# against fp32. Measured on this project's CPU: 3e-3 (r21d, slowfast) to 8e-3 (timesformer).
BF16_RELATIVE_TOLERANCE = 2e-2


@pytest.mark.skipif(not cpu_has_bf16_units(), reason="this CPU has no bf16 units, so precision=bf16 is refused")
@pytest.mark.parametrize("feature_type", ["r21d", "slowfast", "timesformer"])
@pytest.mark.slow
def test_bf16_features_stay_within_the_stated_tolerance_of_fp32(feature_type):
    extractors = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)  # the same random weights for both
        extractors[precision] = make_extractor(feature_type=feature_type, precision=precision)
    for name, tensor in extractors["fp32"].inference.network.state_dict().items():
        reduced_tensor = extractors["bf16"].inference.network.state_dict()[name]  # convolutions and linear layers cast
        assert torch.equal(tensor.to(reduced_tensor.dtype), reduced_tensor), name
    full, reduced = (extractors[p].extract(SAMPLE_B)[feature_type] for p in ("fp32", "bf16"))
    assert full.dtype == reduced.dtype == np.float32 and full.shape == reduced.shape
    error = np.linalg.norm(reduced - full, axis=1) / np.linalg.norm(full, axis=1)
    assert 0 < error.max() < BF16_RELATIVE_TOLERANCE  # nonzero: bf16 really ran


INPUTS = {  # (feature_type, model_name): one clip of the size the network takes
    ("r21d", "r2plus1d_18_16_kinetics"): (1, 3, 8, 112, 112),
    ("slowfast", "slowfast_r50"): (1, 3, 32, 224, 224),
    ("timesformer", "timesformer_divst_8x32_224_k400"): (1, 3, 8, 224, 224),
}


@pytest.mark.parametrize("model", INPUTS, ids=lambda model: model[0])
def test_weights_cast_once_give_autocasts_features_bit_for_bit(model):
    network = randomize(network_for(*model)).eval()
    clips = torch.randn(INPUTS[model], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        cast_each_forward = network(clips)
        cast_autocast_weights(network, torch.bfloat16)
        assert {p.dtype for p in network.parameters()} == {torch.bfloat16, torch.float32}  # norms stay float32
        cast_once = network(clips)
        # and the batch built in bf16 at once: the first layer's cast of it
        cast_before = network(clips.to(torch.bfloat16))
    for ours in (cast_once, cast_before):
        for theirs, mine in zip(cast_each_forward, ours):
            assert torch.equal(theirs, mine)
