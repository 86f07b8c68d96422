import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

pytest_plugins = ["tests.slurm", "tests.servers"]  # the slurm_cluster fixture; nginx, S3 and fault proxy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_A = str(ROOT / "sample" / "a.mp4")  # 1280x720, 25 fps, 132 frames
SAMPLE_B = str(ROOT / "sample" / "b.mp4")  # 480x270, 29.97 fps, 158 frames
FRAME_COUNTS = {SAMPLE_A: 132, SAMPLE_B: 158}

needs_ffmpeg = pytest.mark.ffmpeg  # the test runs the ffmpeg program; skipped where there is none
TOOL_MARKERS = ("ffmpeg", "slurm", "nginx")  # tests that need a program CI has: .ci/run fails if one is skipped
SKIPPED_TOOL_TESTS_FILE = "SKIPPED_TOOL_TESTS_FILE"  # where .ci/run has their names written


def pytest_collection_modifyitems(items):
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
    if shutil.which("ffmpeg") is None:
        for item in items:
            if item.get_closest_marker("ffmpeg"):
                item.add_marker(pytest.mark.skip(reason="needs the ffmpeg program"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Appends each skipped ffmpeg- or Slurm-marked test to $SKIPPED_TOOL_TESTS_FILE, where set."""
    report = yield
    record = os.environ.get(SKIPPED_TOOL_TESTS_FILE)
    if record and report.skipped and any(item.get_closest_marker(name) for name in TOOL_MARKERS):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        with open(record, "a", encoding="utf-8") as file:
            file.write(f"{item.nodeid}: {reason}\n")
    return report


def make_options(**options):
    """Options as the Python API checks them, on the CPU with random weights unless they say otherwise."""
    from video_features.utils.options import make_options

    return make_options(**{"device": "cpu", "pretrained": False, **options})


def make_extractor(**options):
    """An extractor through the Python API, on the CPU, random weights unless a checkpoint is given."""
    from video_features import Extractor

    if options.get("weights_path"):
        options.setdefault("pretrained", True)
    return Extractor(**{"device": "cpu", "pretrained": False, **options})


def cli(*args) -> int:
    """main.py's command line run in this process (no interpreter start-up); its exit code."""
    from video_features.utils.cli.app import main

    with mock.patch.object(sys, "argv", ["main.py", *args]):
        return main()


def network_for(feature_type: str, model_name: str) -> torch.nn.Module:
    """A registered network with random weights, built from its checkpoint record."""
    from video_features.models.registry import load_family

    family = load_family(feature_type, f"video_features.models.{feature_type}")
    return family.build_network(family.checkpoint(model_name))


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random parameters and BatchNorm statistics, so nothing sits at its init default."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator) * 0.1
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            tensor.copy_(values)
    return module


def random_network(build, seed: int) -> torch.nn.Module:
    """``build()`` with its own random initialisation (seeded), then every normalisation weight, bias and
    running statistic and every bias moved off its default. The initialisation keeps the signal
    alive through the depth, so features depend on the input: with ``randomize``'s weights a 3D
    convnet's features vary by ~1e-5 from clip to clip, and a preprocessing constant off by 0.01 moved
    them by less than a feature tolerance (here it moves them by ~5e-3)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = build()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.1
            if name.endswith("running_var"):
                tensor.copy_(1 + noise.abs())
            elif name.endswith("running_mean"):
                tensor.copy_(noise)
            elif tensor.dim() == 1:  # biases and normalisation weights
                tensor.add_(noise)
    return module


def run_cli(*args, cwd=None, pythonpath=None, env=None, timeout=None):
    """Runs main.py in a fresh process, as a user would (``pythonpath``: a folder of extra packages;
    ``env``: the environment, os.environ by default; ``timeout``: seconds, then TimeoutExpired)."""
    env = dict(env or os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (pythonpath, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def truncated_mp4(folder: Path) -> Path:
    """An 8 s H.264 MP4 (index at the front) cut in half, as a download that broke off leaves it."""
    whole = folder / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-t", "8",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole)], check=True)
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def fifo_video(path: Path) -> Path:
    """A named pipe standing in for a video: reading it is refused with a line of its own ("not a
    regular file"), so a run that reads it before an error it should report first shows it."""
    os.mkfifo(path)
    return path


@pytest.fixture(scope="session")
def r21d_checkpoint(tmp_path_factory) -> str:
    """An r2plus1d_18 checkpoint with random weights, in torchvision's file layout."""
    from torchvision.models.video import r2plus1d_18

    path = tmp_path_factory.mktemp("weights") / "r2plus1d_18-random.pth"
    torch.save(random_network(lambda: r2plus1d_18(weights=None), seed=1).state_dict(), path)
    return str(path)
