"""The Hydra application: a new network as one package and one config file, sweeps, --cfg job."""
import os

import numpy as np
import pytest
import torch
from torchvision.models.video import r2plus1d_18

from tests.conftest import ROOT, SAMPLE_B, random_network, run_cli

TINY_PACKAGE = '''
from torch import nn

from video_features.models.registry import Checkpoint, Family, register
from video_features.utils.frames.preprocessing import Preprocessing


class MeanColour(nn.Module):
    """Features: each window's mean normalised colour; logits: a linear head on them."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 400)

    def forward(self, clips):
        features = clips.mean((2, 3, 4))
        return features, self.head(features)


register(Family(
    "tiny",
    (Checkpoint("tiny_4", architecture="mean_colour", url="https://example.invalid/tiny.pth", stack_size=4,
                step_size=4, preprocessing=Preprocessing(32, 32, round, (0.5,) * 3, (0.5,) * 3),
                classes="kinetics400"),),
    build_network=lambda checkpoint: MeanColour(),
))
'''


def test_a_new_network_is_one_package_and_one_config_file(tmp_path):
    (tmp_path / "tinynet").mkdir()
    (tmp_path / "tinynet" / "__init__.py").write_text(TINY_PACKAGE)
    (tmp_path / "conf" / "feature_type").mkdir(parents=True)
    (tmp_path / "conf" / "feature_type" / "tiny.yaml").write_text(
        "# @package _global_\nfeature_type: tiny\nmodel_package: tinynet\n"
    )
    result = run_cli(
        "feature_type=tiny", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"video_paths=[{SAMPLE_B}]",
        "pretrained=false", "device=cpu", "on_extraction=save_numpy", f"output_path={tmp_path / 'out'}",
        "show_pred=true", pythonpath=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    features = np.load(tmp_path / "out" / "tiny" / "tiny_4" / "sample" / "b_tiny.npy")  # named from the current folder
    assert features.shape == (158 // 4, 3)
    # a grey frame normalises to 0: the mean colours of a real video are spread around it
    assert np.abs(features).max() < 1 and features.std(axis=0).min() > 0
    assert "top-5 classes per window" in result.stdout


@pytest.mark.slow
def test_a_sweep_runs_every_job_and_leaves_no_hydra_folders(tmp_path):
    result = run_cli(
        "-m", "feature_type=r21d,slowfast", f"video_paths=[{SAMPLE_B}]", f"input_root={ROOT / 'sample'}",
        "on_extraction=save_numpy", "pretrained=false", "device=cpu", f"output_path={tmp_path / 'out'}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "out/r21d/r2plus1d_18_16_kinetics/b_r21d.npy").shape == (9, 512)
    assert np.load(tmp_path / "out/slowfast/slowfast_r50/b_slowfast.npy").shape == (2, 2304)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no outputs/, multirun/ or .hydra/


def test_every_job_of_a_sweep_in_one_process_warns_of_its_random_weights(tmp_path):
    result = run_cli("-m", "step_size=100,200", f"video_paths=[{SAMPLE_B}]", "pretrained=false", "device=cpu",
                     f"output_path={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: pretrained=false: the network has random weights") == 2, result.stderr


def test_a_sweep_with_a_failed_video_exits_1_naming_the_job(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = run_cli(
        "-m", "stack_size=8,16", f"video_paths=[{SAMPLE_B},{broken}]", "pretrained=false", "device=cpu",
        f"output_path={tmp_path / 'out'}", cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.count("1 extracted, 0 skipped, 1 failed") == 2  # both jobs ran
    assert "job 0: stack_size=8 " in result.stderr and "job 0 ended with exit code 1" in result.stderr
    # nothing outside output_path, where the sweep's record is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "out"]
    assert "stack_size=8,16" in (tmp_path / "out" / ".multirun" / "multirun.yaml").read_text()


def test_a_bad_value_in_a_sweep_is_refused_before_any_job(tmp_path):
    result = run_cli("-m", "batch_size=1,0", f"video_paths=[{SAMPLE_B}]", "pretrained=false", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: batch_size must be a positive integer, got 0\n"


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_sweep_without_its_weights_offline_stops_with_one_line_before_any_job(launcher, tmp_path):
    """The README's sweep without pretrained=false, offline (a proxy that refuses every connection)."""
    torch_home = tmp_path / "torch"
    offline = {**os.environ, "TORCH_HOME": str(torch_home), "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = run_cli("-m", "feature_type=r21d,timesformer", f"video_paths=[{SAMPLE_B}]", f"hydra/launcher={launcher}",
                     f"output_path={tmp_path / 'out'}", cwd=tmp_path, env=offline)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot download https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth ")
    assert not (tmp_path / "out").exists()  # no job started
    # with the file in the cache, the same sweep goes on to its jobs (here: timesformer's weights)
    (torch_home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)  # the failed download made it
    torch.save(random_network(lambda: r2plus1d_18(weights=None), seed=1).state_dict(),
               torch_home / "hub" / "checkpoints" / "r2plus1d_18-91a641e6.pth")
    result = run_cli("-m", "feature_type=r21d,timesformer", f"video_paths=[{SAMPLE_B}]", f"hydra/launcher={launcher}",
                     f"output_path={tmp_path / 'out'}", cwd=tmp_path, env=offline)
    assert result.returncode == 2 and "TimeSformer_divST_8x32_224" in result.stderr.splitlines()[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_cfg_job_prints_the_resolved_config():
    from video_features.models.slowfast import CHECKPOINTS

    result = run_cli("--cfg", "job", "feature_type=slowfast", "batch_size=4", "output_path=out")
    assert result.returncode == 0
    assert "feature_type: slowfast\n" in result.stdout and "batch_size: 4\n" in result.stdout
    assert "model_package: video_features.models.slowfast\n" in result.stdout
    default = CHECKPOINTS[0]  # the record of the feature type's default model
    for line in (f"model_name: {default.name}", f"stack_size: {default.stack_size}", f"step_size: {default.step_size}",
                 "tmp_path: out/.tmp"):
        assert f"\n{line}\n" in result.stdout, line
    assert "model_name: null" not in result.stdout and "stack_size: null" not in result.stdout
