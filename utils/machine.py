"""This process's share of its machine. The jobs that run on one machine at once share its GPUs and
its cores: each takes a GPU by its index among them (device=auto), and its decoding processes and
FFmpeg threads from its part of the cores.

Where the index comes from: a Hydra sweep whose launcher runs its jobs on this machine (joblib,
submitit_local, the basic launcher) gives each job its number, whatever environment the jobs
inherited (inside an sbatch script every job sees the script's SLURM_LOCALID=0); otherwise
torchrun's LOCAL_RANK, whose LOCAL_WORLD_SIZE processes share the cores, or Slurm's SLURM_LOCALID,
whose tasks Slurm gives cores of their own (the affinity ``usable_cores`` reads).
"""
import os
from dataclasses import dataclass
from typing import Optional


def usable_cores() -> int:
    """The cores this process may run on (a cluster job's share, not the whole machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class MachineShare:
    job: Optional[int] = None  # this process's index among the jobs of its machine; None: it is alone
    jobs_sharing_cores: int = 1  # the jobs that run at once on the cores this process may use

    @property
    def cores(self) -> int:
        """The cores that are this job's to decode with."""
        return max(1, usable_cores() // self.jobs_sharing_cores)

    def describe(self) -> dict:
        return {"job": self.job, "jobs_sharing_cores": self.jobs_sharing_cores, "cores": self.cores}


def share_from_environment() -> MachineShare:
    """A process started by torchrun or srun: its index among the machine's processes."""
    rank, tasks = os.environ.get("LOCAL_RANK", ""), os.environ.get("LOCAL_WORLD_SIZE", "")
    if rank.isdigit():
        return MachineShare(int(rank), int(tasks) if tasks.isdigit() and int(tasks) > 0 else 1)
    slurm_task = os.environ.get("SLURM_LOCALID", "")
    if slurm_task.isdigit():
        return MachineShare(int(slurm_task), 1)
    return MachineShare()


def jobs_at_once(launcher: dict, sweep_jobs: int) -> Optional[int]:
    """How many of a sweep's ``sweep_jobs`` jobs its launcher (Hydra's config of it) runs at once on
    this machine; None for a launcher that runs them elsewhere (Slurm)."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs") or 1
        if n_jobs < 0:  # joblib's convention: -1 every core, -2 every core but one, ...
            n_jobs = max(1, usable_cores() + 1 + n_jobs)
        return max(1, min(sweep_jobs, n_jobs))
    if target.endswith("submitit_launcher.LocalLauncher"):
        return max(1, sweep_jobs)
    if target.endswith("BasicLauncher"):
        return 1  # one job after another
    return None


def share_of_sweep_job(job: int, launcher: dict, sweep_jobs: int) -> MachineShare:
    """A sweep job's share: its number among the jobs its launcher runs on this machine, or, for a
    launcher that runs each job on a machine of its own, what the environment says."""
    at_once = jobs_at_once(launcher, sweep_jobs)
    if at_once is None:
        return share_from_environment()
    return MachineShare(job, at_once)
