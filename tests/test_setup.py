"""setup.sh as far as this machine lets it run (PyTorch's own index is out of reach here): --cpu asks
that index for the torch and torchvision of requirements.txt before anything else is installed, and
an apt-get that fails (a held lock) is one line saying what failed and what it means; the set-up
goes on. A stand-in Python records what pip would have been asked."""
import os
import shutil
import stat
import subprocess

import pytest

from tests.conftest import ROOT

FAKE_PYTHON = """#!/bin/sh
# the version check (-c ...) passes; `-m venv DIR` makes DIR/bin/python, which records its arguments
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && printf '#!/bin/sh\\necho "$*" >> "%s/pip-calls.log"\\n' "$PWD" > "$3/bin/python"
  chmod +x "$3/bin/python"
fi
exit 0
"""


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def project_copy(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("setup.sh", "requirements.txt"):
        shutil.copy(ROOT / name, folder / name)
    return folder, executable(tmp_path / "python", FAKE_PYTHON)


def test_cpu_asks_pytorchs_cpu_index_for_the_required_torch_first(tmp_path):
    folder, python = project_copy(tmp_path)
    done = subprocess.run(["bash", "setup.sh", "--cpu"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(python)})
    assert done.returncode == 0, done.stderr
    calls = (folder / "pip-calls.log").read_text().splitlines()
    required = [line.split()[0] for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.startswith(("torch==", "torchvision=="))]
    assert calls[0].endswith(f"--index-url https://download.pytorch.org/whl/cpu {' '.join(required)}")
    assert calls[1].endswith("-r requirements.txt") and calls[2].endswith("--no-deps -e .")


def test_an_unknown_option_is_refused():
    done = subprocess.run(["bash", str(ROOT / "setup.sh"), "--gpu"], capture_output=True, text=True)
    assert (done.returncode, done.stderr.strip()) == (2, "error: unknown option --gpu (use --cpu, --test or both)")


def test_a_failed_apt_get_is_one_line_saying_what_it_means_and_the_set_up_goes_on(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("setup.sh installs the ffmpeg program only as root")
    folder, python = project_copy(tmp_path)
    tools = tmp_path / "bin"  # a PATH without ffmpeg, whose apt-get finds its lock held
    tools.mkdir()
    for tool in ("bash", "dirname", "id", "grep", "cut", "mkdir", "chmod", "cat"):
        os.symlink(shutil.which(tool), tools / tool)
    executable(tools / "apt-get", "#!/bin/sh\necho 'E: Could not get lock /var/lib/apt/lists/lock' >&2\nexit 100\n")
    done = subprocess.run([str(tools / "bash"), "setup.sh"], cwd=folder, capture_output=True, text=True,
                          env={"PATH": str(tools), "PYTHON": str(python), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "E: Could not get lock /var/lib/apt/lists/lock",
        "warning: apt-get could not install ffmpeg (its message is above; another apt-get may hold its lock: "
        "run ./setup.sh again when it is done); without it fps_method=reencode and the tests that run the ffmpeg "
        "program cannot run"]
    assert (folder / "pip-calls.log").read_text().splitlines()[0].endswith("-r requirements.txt")
