"""The GPU check works the first time on a bare GPU machine: `bash benchmarks/gpu.sh prepare` gets
what that machine lacks (PyAV, Hydra, OmegaConf and ANTLR's runtime, built here from its source
archive), a Python without those installs them from the carried wheels with no package index, and
the check then runs there (on the CPU, small) and prints every cell, one planted failure included.

The bare machine's Python is imitated by a fresh virtual environment that sees every package this
one has but the four carried ones."""
import os
import re
import subprocess
import sys
import sysconfig
import venv

import pytest

from tests.conftest import ROOT

CARRIED = re.compile(r"^(av|av\.libs|hydra|hydra_core|omegaconf|antlr4|antlr4_python3_runtime)([-.].*)?$")
PROJECT = re.compile(r"^(__editable__|video_features).*")


def bare_gpu_python(folder) -> str:
    """A Python with this environment's packages except the carried ones (and not the project)."""
    packages = folder / "machine-packages"
    packages.mkdir()
    site_packages = sysconfig.get_paths()["purelib"]
    for name in os.listdir(site_packages):
        if not CARRIED.match(name) and not PROJECT.match(name) and not name.endswith(".pth"):
            (packages / name).symlink_to(os.path.join(site_packages, name))
    venv.create(folder / "python", with_pip=True)
    python = str(folder / "python" / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "machine-packages.pth"), "w") as pth:
        pth.write(f"{packages}\n")
    return python


@pytest.mark.slow
@pytest.mark.ffmpeg  # prepare makes the clip with the ffmpeg program
def test_the_gpu_check_installs_offline_on_a_bare_python_and_prints_every_cell_past_a_failure(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    prepare = subprocess.run(["bash", "benchmarks/gpu.sh", "prepare"], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHON": sys.executable, "WHEELS": str(wheels)})
    assert prepare.returncode == 0, prepare.stderr[-2000:]
    carried = re.search(r"\((\d+) MiB with the working tree; the limit is 64 MiB\)", prepare.stdout)
    assert carried and int(carried.group(1)) < 64, prepare.stdout
    assert any(name.startswith("antlr4_python3_runtime-4.9.3-") for name in os.listdir(wheels))

    python = bare_gpu_python(tmp_path)
    lacking = subprocess.run([python, "-c", "import av"], capture_output=True, text=True)
    assert lacking.returncode != 0 and "No module named 'av'" in lacking.stderr  # the imitation lacks them
    env = {**os.environ, "PYTHON": python, "WHEELS": str(wheels), "SITE": str(site), "PIP_INDEX_URL": "http://0.0.0.0:9"}
    install = subprocess.run(["bash", "benchmarks/gpu.sh", "install"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stderr[-2000:]

    planted = "feed 1 win/s"
    check = subprocess.run(
        [python, "benchmarks/gpu_check.py", "--device", "cpu", "--precision", "fp32", "--batch-size", "2",
         "--feature-types", "r21d", "--workers", "1", "--feed-seconds", "20", "--long-seconds", "30", "--clips", "2",
         "--min-seconds", "0.5", "--plant-failure", planted],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{site}/project:{site}"}, timeout=600,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    lines = check.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| feature_type |"))
    columns = [cell.strip() for cell in lines[header].strip("|").split("|")][1:]
    cells = dict(zip(columns, [cell.strip() for cell in lines[header + 2].strip("|").split("|")][1:]))
    assert cells[planted].startswith("error: RuntimeError: a failure planted in feed 1 win/s")
    for column in ("network win/s", "e2e long win/s", "long / bound", "e2e clips win/s", "clips / bound"):
        assert float(cells[column]) > 0, (column, cells)
    assert cells["main ms/batch 1"] == "-"  # measured with the failed feed
    assert cells["network, cudnn.benchmark win/s"] == cells["peak GPU MB"] == "-"  # CUDA only
    # each cell was printed when measured, before the table
    assert lines.index(f"r21d: {planted} = {cells[planted]}") < header
    assert lines.index(f"r21d: e2e clips win/s = {cells['e2e clips win/s']}") < header
