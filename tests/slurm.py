"""A real one-node Slurm cluster for the tests, started once per session by tests/slurm_cluster.sh.

Use it with ``from tests.slurm import slurm_cluster  # noqa: F401`` in a test module. The fixture
yields the environment (``os.environ`` plus ``SLURM_CONF``) that Slurm commands, and anything that
calls them such as submitit, must run with. It skips rather than installs: ``.ci/run`` installs
the packages with ``bash tests/slurm_cluster.sh install``.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the Slurm cluster needs root (it starts munged, slurmctld and slurmd)")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # as the script does
    missing = [name for name in COMMANDS if shutil.which(name, path=path) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): run `bash {SCRIPT} install`")
    env = {**os.environ, "SLURM_CLUSTER_DIR": str(tmp_path_factory.mktemp("slurm"))}
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True)
    try:
        if started.returncode == 3:  # a Slurm daemon already runs on this machine
            pytest.skip(started.stderr.strip())
        assert started.returncode == 0, f"slurm_cluster.sh start failed:\n{started.stdout}{started.stderr}"
        env["SLURM_CONF"] = str(Path(env["SLURM_CLUSTER_DIR"]) / "slurm.conf")
        yield env
    finally:
        # Also after a failed start: it may have left some of the daemons running.
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False)
