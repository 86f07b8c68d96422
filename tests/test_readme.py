"""The README's commands run as written: the blocks marked ``<!-- test -->`` (as a doctest would run
them, in a fresh folder holding the samples), and the Python API snippet from a folder outside the
repository."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def marked_blocks() -> list[str]:
    return re.findall(r"<!-- test -->\n```bash\n(.*?)```", README, re.S)


def user_folder(tmp_path):
    """A folder as a user has it after the Quick start: the repository's files (linked), no outputs."""
    for name in ("main.py", "sample"):
        os.symlink(ROOT / name, tmp_path / name)
    bin_folder = os.path.dirname(sys.executable)  # the environment's python first, as after `source .venv/bin/activate`
    return {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}"}


def test_the_readme_marks_its_usage_commands_to_be_run():
    blocks = marked_blocks()
    assert blocks and any("video_paths=sample " in block for block in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(marked_blocks())))
def test_a_marked_readme_block_runs_as_written(number, tmp_path):
    block = marked_blocks()[number]
    done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=user_folder(tmp_path), capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_one_line_reads_of_parquet_files_run_as_written(tmp_path):
    """The README's Parquet run, then its block of reads (pandas, datasets, DuckDB, Polars, read_video)."""
    (run,) = [line for line in marked_blocks()[0].splitlines() if "on_extraction=save_parquet" in line]
    reads = re.search(r"<!-- test -->\n```python\n(.*?)```", README, re.S).group(1)
    env = user_folder(tmp_path)
    done = subprocess.run(["bash", "-e", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    checks = "\nassert features.shape == (8, 512) and first.shape == (8, 512) and one['r21d'].shape == (8, 512)"
    checks += "\nassert len(frame) == len(dataset) == len(windows) == 3 and dataset[0]['r21d'].shape[1] == 512\n"
    done = subprocess.run([sys.executable, "-c", reads + checks], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_python_snippet_runs_from_any_folder(tmp_path):
    snippet = re.search(r"## Python API.*?```python\n(.*?)```", README, re.S).group(1)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # the project is installed
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["a.mp4 (8, 512)", "b.mp4 (9, 512)"]
    assert list(tmp_path.iterdir()) == []  # an empty folder, nothing written there


def test_the_readmes_speak_of_what_users_can_know_not_of_issue_numbers():
    for readme in (README, (ROOT / "benchmarks" / "README.md").read_text()):
        assert not re.search(r"\bissues? \d+|the new feed", readme, re.I)
