"""Jobs through the real one-node Slurm cluster: a plain sbatch array, and a Hydra sweep on submitit."""
import glob
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.slurm


def wait_for(paths, job_id, env, timeout_s=60):
    """Until every path exists and the job has left the queue (no accounting here, so no sacct)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id], env=env, capture_output=True, text=True).stdout
        if all(path.exists() for path in paths) and not queued.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id}: after {timeout_s} s, missing {[str(p) for p in paths if not p.exists()]}")


def test_the_installed_daemons_are_not_enabled_at_boot(slurm_cluster):
    """./setup.sh --test installs Slurm for the tests, which start and stop it: nothing starts at boot."""
    for service in ("munge", "slurmctld", "slurmd"):
        assert not glob.glob(f"/etc/systemd/system/*.wants/{service}.service"), service
        assert not glob.glob(f"/etc/rc[2-5].d/S*{service}"), service


def test_sbatch_array_runs_every_task(slurm_cluster, tmp_path):
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", f"--output={tmp_path}/%A_%a.log",
         "--wrap", f'echo "$SLURM_ARRAY_TASK_ID" > {tmp_path}/task_"$SLURM_ARRAY_TASK_ID"'],
        env=slurm_cluster, capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]
    tasks = [tmp_path / f"task_{i}" for i in (0, 1)]
    wait_for(tasks, job_id, slurm_cluster)
    assert [path.read_text().strip() for path in tasks] == ["0", "1"]


APP = '''
import os
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore


@dataclass
class Config:
    shard_id: int = 0


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(config: Config) -> None:
    # KeyError, so no result, unless it runs as a Slurm job.
    Path({out!r}, f"shard_{{config.shard_id}}").write_text(os.environ["SLURM_JOB_ID"])


if __name__ == "__main__":
    main()
'''


def test_hydra_sweep_runs_on_slurm_through_submitit(slurm_cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format(out=str(out))))
    result = subprocess.run(
        [sys.executable, "app.py", "-m", "shard_id=0,1", "hydra/launcher=submitit_slurm",
         "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
         # Memory is not a consumable with CR_Core, but --mem above the node's RealMemory is refused.
         "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=slurm_cluster, capture_output=True, text=True,
        # submitit waits for result files; a job that died without one would be waited for forever.
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["shard_0", "shard_1"]
    assert all(path.read_text().isdigit() for path in out.iterdir())  # the Slurm job ids
