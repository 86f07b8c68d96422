"""What a GPU machine meets first, tested on the CPU: shared memory the system will not pin, a device
error that surfaces where the host waits, decoding processes kept for the extractor's life, the cores
and GPUs that the jobs of one machine share, and FFmpeg's threads shared out among the jobs running.

Where a test needs CUDA's behaviour it injects it at the edge the code meets (the runtime's answer
to a registration, an event that reports the error); everything else runs for real."""
import json
import os
import subprocess
import sys

import psutil
import pytest
import torch

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B, cli, make_extractor, run_cli
from video_features.utils.frames.device_feed import DeviceFeed, pin
from video_features.utils.machine import MachineShare, share_of_sweep_job, usable_cores
from video_features.utils.network.device import resolve_device
from video_features.utils.video.pool import DecoderPool, decoding_threads

JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}
SLURM = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}


def decoding_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children() if "utils.video.worker" in " ".join(p.cmdline())}


class Registration:
    """The CUDA runtime as a machine with a locked-memory limit answers: the second buffer is refused
    (cudaErrorMemoryAllocation), and the error stays pending until something reads it."""

    def __init__(self):
        self.calls = []

    def register(self, pointer, size):
        self.calls.append("register")
        return 2 if self.calls.count("register") == 2 else 0

    def clear_error(self):
        self.calls.append("clear the pending error")


def test_shared_memory_the_system_will_not_pin_is_copied_synchronously_after_clearing_the_error():
    buffers = [torch.zeros(64, dtype=torch.uint8) for _ in range(3)]
    registration = Registration()
    with pytest.warns(UserWarning, match=r"could not pin .* \(CUDA error 2\): copies of 2 of 3 processes' frames"):
        pinned = pin(buffers, registration)
    assert pinned == [buffers[0].data_ptr()]  # unpinned when the feed closes
    # the refused registration's error is taken at once, before any kernel launch could report it
    assert registration.calls == ["register", "register", "clear the pending error"]


class FailingEvent:
    """An event of a device that failed: CUDA reports the error when the host waits for it."""

    def query(self):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered\nCompile with ...")

    synchronize = query


def test_a_device_error_at_a_synchronisation_point_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):

    to_host = DeviceFeed.to_host

    def failing_to_host(self, *tensors):
        pending = to_host(self, *tensors)
        pending.event = FailingEvent()
        return pending

    def sticky_close(self):  # a sticky error also fails the feed's last synchronize
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(DeviceFeed, "to_host", failing_to_host)
    monkeypatch.setattr(DeviceFeed, "close", sticky_close)
    out = tmp_path / "out"
    code = cli(*[f"video_paths=[{SAMPLE_A},{SAMPLE_B}]", "pretrained=false", "device=cpu", "decode_workers=2",
                 "on_extraction=save_numpy", f"output_path={out}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == ("error: cpu failed: CUDA error: an illegal memory access was encountered; the run stopped "
                       "after 0 extracted, 0 skipped, 0 failed (videos in progress were not saved)")
    assert not decoding_processes()  # stopped although closing the feed failed too
    assert not [p for p in out.rglob("*") if p.is_file() and ".runs" not in p.parts]


def test_extract_in_a_loop_starts_the_decoding_processes_once():
    extractor = make_extractor(decode_workers=2, stack_size=64, step_size=64)
    extractor.extract(SAMPLE_B)
    started = decoding_processes()
    assert len(started) == 2
    for path in [SAMPLE_A, SAMPLE_B] * 3:
        assert extractor.extract(path)["r21d"].shape[1] == 512
    assert decoding_processes() == started
    extractor.close()
    assert not decoding_processes()
    assert extractor.extract(SAMPLE_B)["r21d"].shape == (2, 512)  # started again
    with extractor:
        pass
    assert not decoding_processes()


def test_a_caller_that_stops_reading_stops_the_decoding_processes_and_the_next_call_starts_new_ones():
    extractor = make_extractor(decode_workers=2, stack_size=64, step_size=64)
    results = extractor.extract_many([SAMPLE_B, SAMPLE_A, SAMPLE_B])
    next(results)
    first = decoding_processes()
    results.close()  # videos still in work: their processes are not reused
    assert not first & decoding_processes()
    assert [r.error for r in extractor.extract_many([SAMPLE_A, SAMPLE_B])] == [None, None]
    extractor.close()


def test_the_decoding_processes_stop_when_a_program_ends_without_closing_its_extractor():
    code = ("import psutil; from tests.conftest import make_extractor, SAMPLE_B\n"
            "e = make_extractor(decode_workers=2); e.extract(SAMPLE_B)\n"
            "print(*[p.pid for p in psutil.Process().children() if 'utils.video.worker' in ' '.join(p.cmdline())])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ), timeout=300)
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2, done.stderr
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


@pytest.mark.parametrize("cores, running, threads", [(16, 1, 16), (16, 3, 5), (16, 15, 1), (16, 40, 1), (2, 1, 2),
                                                      (2, 2, 1), (4, 1, 4)])
def test_ffmpeg_threads_are_the_cores_shared_among_the_jobs_running(cores, running, threads):
    assert decoding_threads(cores, running) == threads


def test_a_short_video_alone_decodes_with_every_core_and_many_share_them(monkeypatch):
    jobs = []
    assign = DecoderPool.assign
    monkeypatch.setattr(DecoderPool, "assign", lambda self, decoder, job: jobs.append(job) or assign(self, decoder, job))
    extractor = make_extractor(decode_workers=2, stack_size=64, step_size=64)
    extractor.extract(SAMPLE_B)
    assert [job.threads for job in jobs] == [extractor.share.cores]  # alone: every core of the job's share
    jobs.clear()
    list(extractor.extract_many([SAMPLE_A, SAMPLE_B, SAMPLE_A]))
    assert [job.threads for job in jobs][:2] == [max(1, extractor.share.cores // 2)] * 2  # two at once
    extractor.close()


def test_the_jobs_of_a_joblib_sweep_inside_slurm_take_their_own_gpu_and_share_the_cores(monkeypatch):
    monkeypatch.setenv("SLURM_LOCALID", "0")  # what every job inherits from an sbatch script
    share = share_of_sweep_job(3, JOBLIB, sweep_jobs=4)
    assert share == MachineShare(job=3, jobs_sharing_cores=min(4, usable_cores()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", share) == torch.device("cuda", 1)
    # a job that Slurm runs as a task of its own goes by its task's index; Slurm gave it its cores
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert share_of_sweep_job(6, SLURM, sweep_jobs=64) == MachineShare(job=1, jobs_sharing_cores=1)
    # torchrun's processes share the cores
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert share_of_sweep_job(0, SLURM, sweep_jobs=1) == MachineShare(job=2, jobs_sharing_cores=4)


def test_a_real_joblib_sweep_in_an_sbatch_environment_records_each_jobs_share(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SLURM_LOCALID": "0"}
    done = run_cli("-m", "shard_id=0,1", "num_shards=2", "hydra/launcher=joblib", f"video_paths=[{SAMPLE_A},{SAMPLE_B}]",
                   "pretrained=false", "device=cpu", "stack_size=64", "step_size=64", "on_extraction=save_numpy",
                   f"output_path={out}", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    starts = [json.loads(log.read_text().splitlines()[0]) for log in (out / ".runs").iterdir()]
    machines = sorted((start["shard"], start["machine"]) for start in starts)
    cores = max(1, usable_cores() // 2)
    assert machines == [("0/2", {"job": 0, "jobs_sharing_cores": 2, "cores": cores, "decode_workers": 1}),
                        ("1/2", {"job": 1, "jobs_sharing_cores": 2, "cores": cores, "decode_workers": 1})]
