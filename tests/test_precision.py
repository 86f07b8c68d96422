"""Reduced precision: bf16 autocast features against fp32, on the same weights and video."""
import numpy as np
import pytest
import torch

from tests.conftest import SAMPLE_B, make_extractor
from utils.network.precision import cpu_has_bf16_units

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
        assert torch.equal(tensor, extractors["bf16"].inference.network.state_dict()[name]), name
    full, reduced = (extractors[p].extract(SAMPLE_B)[feature_type] for p in ("fp32", "bf16"))
    assert full.dtype == reduced.dtype == np.float32 and full.shape == reduced.shape
    error = np.linalg.norm(reduced - full, axis=1) / np.linalg.norm(full, axis=1)
    assert 0 < error.max() < BF16_RELATIVE_TOLERANCE  # nonzero: bf16 really ran
