"""The GPU check (benchmarks/gpu.sh, gpu_check.py) works the first time on a bare GPU machine, and
what it prints can be trusted: the device's features are checked first, a hang costs one cell and
leaves every thread's stack in the log, and the figures are timed without start-up.

`bash benchmarks/gpu.sh prepare` gets what that machine lacks (PyAV, Hydra, OmegaConf and ANTLR's
runtime, built here from its source archive), a Python without those installs them from the carried
wheels with no package index, and the check then runs there (on the CPU, small). The bare machine's
Python is imitated by a fresh virtual environment that sees every package this one has but the four
carried ones."""
import argparse
import functools
import os
import re
import signal
import subprocess
import sys
import sysconfig
import textwrap
import venv
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLE_B

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_cells  # noqa: E402
import gpu_check  # noqa: E402
import timed_cells  # noqa: E402
from gpu_correctness import correctness, differing_windows  # noqa: E402

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


def table_cells(lines: list[str]) -> tuple[int, dict[str, str]]:
    """The line where the (one-row) table starts, and its cells by column."""
    header = next(i for i, line in enumerate(lines) if line.startswith("| feature_type |"))
    columns = [cell.strip() for cell in lines[header].strip("|").split("|")][1:]
    return header, dict(zip(columns, [cell.strip() for cell in lines[header + 2].strip("|").split("|")][1:]))


@pytest.mark.slow
@pytest.mark.ffmpeg  # prepare makes the clip with the ffmpeg program
def test_the_gpu_check_installs_offline_on_a_bare_python_and_runs_every_cell_past_a_failure_and_a_hang(tmp_path):
    wheels, site, out, bin_dir = tmp_path / "wheels", tmp_path / "site", tmp_path / "out", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("#!/bin/sh\necho 'a system python3 without torch' >&2\nexit 1\n")
    (bin_dir / "python3").chmod(0o755)
    # no PYTHON: prepare takes the project's .venv, not the python3 first on the PATH
    env = {key: value for key, value in os.environ.items() if key != "PYTHON"}
    prepare = subprocess.run(["bash", "benchmarks/gpu.sh", "prepare"], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "WHEELS": str(wheels), "PATH": f"{bin_dir}:{env['PATH']}"})
    assert prepare.returncode == 0, prepare.stderr[-2000:]
    carried = re.search(r"\((\d+) MiB with the working tree; the limit is 64 MiB\)", prepare.stdout)
    assert carried and int(carried.group(1)) < 64, prepare.stdout
    assert any(name.startswith("antlr4_python3_runtime-4.9.3-") for name in os.listdir(wheels))

    python = bare_gpu_python(tmp_path)
    lacking = subprocess.run([python, "-c", "import av"], capture_output=True, text=True)
    assert lacking.returncode != 0 and "No module named 'av'" in lacking.stderr  # the imitation lacks them
    env = {**env, "PYTHON": python, "WHEELS": str(wheels), "SITE": str(site), "PIP_INDEX_URL": "http://0.0.0.0:9",
           "OUT": str(out)}
    failed, hung = "feed 2 win/s", "network cudnn.benchmark win/s"
    check = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--long-seconds", "20", "--clips", "1", "--plant-failure", failed,
         "--plant-hang", hung, "--cell-limit", f"{hung}=2", "--plant-wrong-feature"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert check.returncode == 0, check.stdout[-3000:]
    log = (out / "gpu_check.log").read_text()
    assert log in check.stdout  # the log has what was printed (and, below, the stacks)
    lines = log.splitlines()
    header, cells = table_cells(lines)

    measured = [line for line in lines[:header] if line.startswith("r21d: ") and " = " in line]
    assert measured[0].startswith("r21d: correctness = WRONG: fp32 with 1 process = all over")
    assert [line.split(" = ")[0][len("r21d: "):] for line in measured] == list(cells)  # as printed, in order
    assert cells[failed] == "error: RuntimeError: a failure planted in feed 2 win/s (--plant-failure)"
    assert cells["main ms/batch 2"] == cells[failed]  # the same measurement
    assert cells[hung] == "timeout after 2 s"
    hang = log[log.index(f"r21d: {hung}: past its limit; every thread's stack:"):]
    assert "most recent call first" in hang and "in planted_hang" in hang
    assert float(cells["network fp32 win/s"]) > 0  # the cell after the hang
    for column in ("network win/s", "feed all win/s", "start-up s", "e2e long win/s", "long / bound",
                   "e2e clips win/s", "clips / bound"):
        assert float(cells[column]) > 0, (column, cells)
    assert cells["slots pinned"] == cells["peak GPU MB"] == "n/a: CUDA only"
    assert "CUDA, cuDNN, NVIDIA driver: n/a (no CUDA device)" in lines[1]
    assert lines[header + 4].startswith("n/a: does not apply here") and "skipped: the time budget" in lines[header + 4]


def run_table(tmp_path, script: str, **kwargs) -> subprocess.Popen:
    """A script that fills a timed_cells.Table (`table`, guards on, GRACE 1 s), in a process of its own."""
    path = tmp_path / "cells.py"
    path.write_text(textwrap.dedent(f"""\
        import signal, sys, threading, time
        sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
        import timed_cells
        timed_cells.GRACE = 1.0
        """) + textwrap.dedent(script))
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_a_cell_past_its_limit_dumps_every_threads_stack_and_the_next_cells_go_on(tmp_path):
    check = run_table(tmp_path, """\
        table = timed_cells.Table(["r21d"], ["a", "b", "c"], budget_s=600, cell_s=600, limits={"b": 1},
                                  plant_hang="b")
        table.guard()
        table.measure("r21d", "a", lambda: 1.5)
        table.measure("r21d", "b", lambda: 2.0)
        table.measure("r21d", "c", lambda: 3.0)
        table.print()
        """)
    stdout, stderr = check.communicate()
    assert check.returncode == 0, stderr
    assert stdout.splitlines()[:3] == ["r21d: a = 1.50", "r21d: b = timeout after 1 s", "r21d: c = 3.00"]
    assert "| r21d | 1.50 | timeout after 1 s | 3.00 |" in stdout
    stacks = stderr[stderr.index("r21d: b: past its limit; every thread's stack:"):]
    assert "in planted_hang" in stacks and "in _watch" in stacks  # every thread's, the watchdog's too


def test_sigterm_dumps_every_threads_stack_and_prints_the_table_so_far(tmp_path):
    check = run_table(tmp_path, """\
        def waiting_for_the_device():
            print("waiting", flush=True)
            time.sleep(600)

        table = timed_cells.Table(["r21d"], ["a", "b", "c"], budget_s=600, cell_s=600)
        table.guard()
        table.measure("r21d", "a", lambda: 1.5)
        table.measure("r21d", "b", waiting_for_the_device)
        table.measure("r21d", "c", lambda: 3.0)
        """)
    assert [check.stdout.readline() for _ in range(2)] == ["r21d: a = 1.50\n", "waiting\n"]
    check.send_signal(signal.SIGTERM)
    stdout, stderr = check.communicate()
    assert check.returncode == 143
    assert "in waiting_for_the_device" in stderr and "terminated (SIGTERM)" in stderr
    assert "| r21d | 1.50 | terminated | not run |" in stdout


def test_a_main_thread_stuck_where_python_cannot_interrupt_it_is_given_up_with_its_stacks_and_the_table(tmp_path):
    check = run_table(tmp_path, """\
        def stuck_in_a_device_wait():
            # the alarm cannot reach this thread, as in a C call that released the GIL and never returns
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(600)

        table = timed_cells.Table(["r21d"], ["a", "b"], budget_s=600, cell_s=1)
        table.guard()
        table.measure("r21d", "a", stuck_in_a_device_wait)
        table.measure("r21d", "b", lambda: 2.0)
        """)
    stdout, stderr = check.communicate()
    assert check.returncode == timed_cells.STUCK
    assert "r21d: a: stuck past its limit where Python cannot interrupt it" in stderr
    assert "in stuck_in_a_device_wait" in stderr
    assert "| r21d | stuck past its limit | not run |" in stdout


def test_a_cell_without_time_left_is_skipped_one_that_does_not_apply_says_why_and_the_legend_says_both():
    table = timed_cells.Table(["r21d"], ["a", "b", "c"], budget_s=600, cell_s=600)

    def cuda_only():
        raise timed_cells.NotApplicable("CUDA only")

    table.measure("r21d", "a", cuda_only)
    table.measure("r21d", ("b", "c"), lambda: (0.004, "yes"))
    table.end = 0  # the budget spent
    table.measure("r21d", "a", lambda: 1.0)
    assert table.cells == {("r21d", "a"): "skipped", ("r21d", "b"): "4.0e-03", ("r21d", "c"): "yes"}
    legend = table.lines()[-1]
    assert "n/a: does not apply here" in legend and "skipped: the time budget (--budget) was spent" in legend


def test_the_first_pass_takes_every_feature_type_before_the_second_begins():
    order = [(feature_type, cell.columns[0], cell.second_pass)
             for feature_type, cell in gpu_cells.plan(["r21d", "slowfast", "timesformer"], ["1", "4"])]
    passes = [second for _, _, second in order]
    assert passes == sorted(passes) and passes.count(False) == 3 * 8  # one pass, then the other
    first = [(feature_type, column) for feature_type, column, second in order if not second]
    assert [column for feature_type, column in first if feature_type == "slowfast"] == [
        "correctness", "processes", "network win/s", "feed all win/s", "start-up s", "e2e long win/s",
        "e2e clips win/s", "peak GPU MB"]
    assert [feature_type for feature_type, column in first if column == "correctness"] == [
        "r21d", "slowfast", "timesformer"]
    assert [column for feature_type, column, second in order if second and feature_type == "r21d"] == [
        "feed 1 win/s", "feed 4 win/s", "network cudnn.benchmark win/s", "network fp32 win/s"]


class FakeExtractor:
    """Records, for each extract_many call: its paths, whether its decoding processes were already
    running, and whether the network was the real one; warns as a pipeline that cannot pin would."""

    def __init__(self, warning: str = ""):
        self.calls, self.running, self.warning = [], False, warning
        self.inference = SimpleNamespace(_forward=self.network)
        self.pipeline = SimpleNamespace(decode_workers=2, windows_through=0)

    def network(self, clips):
        raise AssertionError("not run by the fakes")

    def close(self):
        self.running = False

    def extract_many(self, paths):
        self.calls.append((list(paths), self.running, self.inference._forward == self.network))
        if not self.running and self.warning:
            warnings.warn(self.warning)
        self.running = True
        for path in paths:
            yield SimpleNamespace(path=path, error=None, outputs={"timestamps_ms": np.zeros((3, 2))})


def test_the_timed_extraction_runs_on_decoding_processes_a_first_untimed_extraction_started():
    extractor = FakeExtractor()
    extractor.running = True  # started by an earlier cell: the start-up is measured from none all the same
    startup, seconds, windows, _ = gpu_cells.timed_extraction(extractor, ["long.mp4", "clip.mp4"])
    assert extractor.calls == [([gpu_cells.WARM_CLIP] * 2, False, False),  # from none, a clip a process, no network
                               (["long.mp4", "clip.mp4"], True, True)]  # timed: processes running, the network back
    assert windows == 6 and startup >= 0 and seconds >= 0  # the warm-up's windows are not counted


def test_a_refusal_to_pin_the_slots_is_reported_by_the_start_up_even_where_warnings_are_ignored():
    refused = "could not pin the decoding processes' shared memory (CUDA error 1): copies of 2 of 2 processes' frames"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as PYTHONWARNINGS=ignore would
        assert gpu_cells.warm_up(FakeExtractor(warning=refused))[1] == [refused]
        assert gpu_cells.warm_up(FakeExtractor())[1] == []


def test_the_driver_version_is_read_from_the_kernel_module(tmp_path):
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
                       "(dvs-builder@U16-I3-B03-4-3)  Sun Jul 27 06:54:38 UTC 2025\nGCC version:  gcc 12.2.0\n")
    assert gpu_check.driver_version(str(version)) == "580.65.06"


def cpu_args(**overrides) -> argparse.Namespace:
    options = {"device": "cpu", "precision": "fp32", "batch_size": 2, "min_seconds": 0.5, "plant_wrong_feature": False}
    return argparse.Namespace(**{**options, **overrides})


def test_windows_that_differ_are_named_by_their_video():
    reference = {"a.mp4": {"timestamps_ms": np.zeros((8, 2))}, "b.mp4": {"timestamps_ms": np.zeros((9, 2))}}
    assert differing_windows(reference, reference) is None
    assert differing_windows(reference, {**reference, "b.mp4": {"timestamps_ms": np.ones((9, 2))}}) == \
        "b.mp4: 9 windows against 9"
    assert differing_windows(reference, {**reference, "a.mp4": {"timestamps_ms": np.zeros((7, 2))}}) == \
        "a.mp4: 7 windows against 8"


@pytest.mark.slow
def test_the_correctness_cell_finds_a_wrong_feature_of_the_device_and_says_why_bf16_does_not_apply(monkeypatch):
    # two windows of the sample (every 80th frame), compared with 1 and 2 decoding processes
    build = functools.partial(gpu_cells.Subject(cpu_args(), "r21d").build, step_size=80)
    planted, _ = correctness(build, "r21d", [SAMPLE_B], workers=2, plant=True)
    assert planted.startswith("WRONG: fp32 with 2 processes over ")
    assert "fp32 max diff 0.0e+00 (1 process)" in planted  # the run without the planted error

    monkeypatch.setattr("video_features.utils.network.precision.cpu_has_bf16_units", lambda: False)
    text, fp32 = correctness(build, "r21d", [SAMPLE_B], workers=2)
    assert text == ("ok: fp32 max diff 0.0e+00 (1 process); fp32 max diff 0.0e+00 (2 processes); bf16 n/a: "
                    "precision=bf16: this CPU has no AVX512-BF16 or AMX units, without which bf16 runs dozens of "
                    "times slower than fp32; windows equal")
    assert fp32.pipeline.decode_workers == 2 and fp32.inference.autocast_dtype is None  # for the fp32 cell


@pytest.mark.slow
def test_the_cudnn_benchmark_figure_is_timed_by_a_process_of_its_own():
    # cuDNN keeps its choice of algorithm per layer shape for the process's life: in this one, where
    # the network already ran, cudnn_benchmark=true would not search
    measured = gpu_cells.network_in_fresh_process(cpu_args(), "r21d")
    assert measured["pid"] != os.getpid() and measured["windows_per_s"] > 0
