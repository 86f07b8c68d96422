"""Many processes on one list: claims, shards, Hydra's launchers, a real Slurm, run logs and faults."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import torch

from tests.conftest import ROOT, SAMPLE_A, SAMPLE_B, run_cli
from video_features.utils.run.inputs import shard
from video_features.utils.store.claims import Claims
from video_features.utils.store.runlog import read_records

OUT = ("r21d", "r2plus1d_18_16_kinetics")
# One thread everywhere: joblib's workers get cores // jobs threads, and oneDNN's sums in another
# order differ in the last bits, so byte-identical outputs need the same thread count.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
WINDOWS = ("stack_size=32", "step_size=32")  # few windows: quick on 2 cores


@pytest.fixture
def videos(tmp_path):
    """Four short videos in one folder (copies of the samples)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for index, source in enumerate((SAMPLE_A, SAMPLE_B, SAMPLE_B, SAMPLE_A)):
        shutil.copy(source, folder / f"v{index}.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{folder / f'v{index}.mp4'}\n" for index in range(4)))
    return listing


def command(listing, out, checkpoint):
    return [f"file_with_video_paths={listing}", f"weights_path={checkpoint}", "device=cpu",
            "on_extraction=save_numpy", f"output_path={out}", f"input_root={listing.parent / 'videos'}", *WINDOWS]


def outputs(out) -> dict[str, bytes]:
    folder = out / OUT[0] / OUT[1]
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".npy"}


def extracted_per_video(out) -> Counter:
    return Counter(r["path"] for r in read_records(str(out)) if r["event"] == "video" and r["status"] == "extracted")


def test_shards_are_disjoint_cover_the_list_and_ignore_its_order():
    paths = [f"/data/{name}.mp4" for name in "qwertyuiop"]
    parts = [shard(paths, k, 3) for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(paths)
    reversed_parts = [shard(list(reversed(paths)), k, 3) for k in range(3)]
    assert [set(part) for part in reversed_parts] == [set(part) for part in parts]  # the split ignores the order
    assert all(part == sorted(part, key=paths.index) for part in parts)  # each part keeps the input order
    assert all(part == sorted(part, key=paths.index, reverse=True) for part in reversed_parts)
    assert [len(part) for part in parts] == [4, 3, 3]


def test_a_claim_is_taken_once_and_a_stale_one_taken_over(tmp_path):
    path = str(tmp_path / "v.claim")
    mine, other = Claims(stale_seconds=60), Claims(stale_seconds=60)
    assert mine.take(path) and not other.take(path)  # a live claim of this host's live process
    mine.release(path)
    assert other.take(path)
    other.release(path)
    with open(path, "w") as file:  # a claim of another machine, refreshed long ago
        json.dump({"host": "elsewhere", "pid": 1, "time": 0}, file)
    assert not mine.take(path)
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert mine.take(path) and mine.holds(path)
    assert os.listdir(tmp_path) == ["v.claim"]  # the stale claim taken away leaves nothing beside
    with open(path) as file:
        assert json.load(file)["pid"] == os.getpid()
    mine.close()
    assert not os.path.exists(path)


def held_claims(folder) -> set[str]:
    """The videos whose claims in ``folder`` are written in full (a claim is created, then filled)."""
    held = set()
    for claim in folder.glob("*.claim"):
        try:
            json.loads(claim.read_text())
        except (OSError, ValueError):
            continue
        held.add(claim.stem)
    return held


@pytest.mark.slow
def test_two_processes_on_one_list_contend_for_a_claim_and_extract_each_video_once(videos, tmp_path, r21d_checkpoint):
    """The first process claims a video and is frozen (SIGSTOP) while it holds the claim: alive, so
    the claim is not stale. The second runs the same command meanwhile: it must leave the claimed
    video to the first and extract the others; the first, resumed, finds them done."""
    out = tmp_path / "out"
    folder = out / OUT[0] / OUT[1]
    env = dict(os.environ)
    argv = [sys.executable, str(ROOT / "main.py"), *command(videos, out, r21d_checkpoint)]
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not held_claims(folder):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "no claim within 300 s"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)
        held = held_claims(folder)  # v0, and maybe the next one its decoding thread went on to
        second = subprocess.run(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, timeout=600)
        first.send_signal(signal.SIGCONT)
        first_err = first.communicate(timeout=600)[1]
    finally:
        first.kill()
    assert (first.returncode, second.returncode) == (0, 0), first_err + second.stderr
    # the run logs: one file per process, its start record naming the pid
    records = read_records(str(out))
    pids = {r["log"]: r["pid"] for r in records if r["event"] == "start"}
    logs = {pid: {} for pid in pids.values()}  # pid -> {video name: its statuses}
    for record in records:
        if record["event"] == "video":
            name = os.path.splitext(os.path.basename(record["path"]))[0]
            logs[pids[record["log"]]].setdefault(name, []).append(record["status"])
    others = {f"v{i}" for i in range(4)} - held
    assert len(logs) == 2
    (second_log,) = [log for pid, log in logs.items() if pid != first.pid]
    assert second_log == {**{name: ["claimed"] for name in held}, **{name: ["extracted"] for name in others}}
    assert logs[first.pid] == {**{name: ["extracted"] for name in held}, **{name: ["skipped"] for name in others}}
    assert second.stderr.splitlines()[-1] == f"{len(others)} extracted, 0 skipped, 0 failed, {len(held)} claimed by other processes"
    assert first_err.splitlines()[-1] == f"{len(held)} extracted, {len(others)} skipped, 0 failed"
    assert sorted(extracted_per_video(out).values()) == [1, 1, 1, 1]  # no video twice
    assert len(outputs(out)) == 12 and not list(folder.glob("*.claim"))


@pytest.mark.slow
def test_a_killed_process_is_resumed_by_the_same_command(videos, tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    argv = [sys.executable, str(ROOT / "main.py"), *command(videos, out, r21d_checkpoint)]
    process = subprocess.Popen(argv, cwd=tmp_path, env=dict(os.environ),
                               stderr=subprocess.DEVNULL)
    folder = out / OUT[0] / OUT[1]
    deadline = time.monotonic() + 120
    while not list(folder.glob("*.claim")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    claimed = list(folder.glob("*.claim"))
    assert claimed, "the process was killed while a video was claimed"
    result = run_cli(*command(videos, out, r21d_checkpoint), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list(folder.glob("*.claim")) and not list(folder.glob(".tmp-*"))
    assert len(outputs(out)) == 12  # all four videos, every file whole
    assert run_cli("status=true", *command(videos, out, r21d_checkpoint), cwd=tmp_path).stdout.startswith(
        "all 4 videos done")


def test_a_failed_shard_leaves_the_others_intact_and_status_names_its_videos(tmp_path, r21d_checkpoint):
    broken = tmp_path / "videos" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"not a video")
    shutil.copy(SAMPLE_B, tmp_path / "videos" / "b.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{broken}\n{tmp_path / 'videos' / 'b.mp4'}\n")  # by path: shard 0 b.mp4, shard 1 broken.mp4
    out = tmp_path / "out"
    result = run_cli("-m", "shard_id=0,1", "num_shards=2", *command(listing, out, r21d_checkpoint), cwd=tmp_path)
    assert result.returncode == 1 and "job 1 ended with exit code 1" in result.stderr
    assert sorted(outputs(out)) == ["b_fps.npy", "b_r21d.npy", "b_timestamps_ms.npy"]
    status = run_cli("status=true", *command(listing, out, r21d_checkpoint), cwd=tmp_path)
    assert status.returncode == 1
    assert status.stdout.splitlines()[0].startswith(
        "1 done, 1 failed, 0 not done of 2 videos (r21d/r2plus1d_18_16_kinetics; 2 processes")
    assert status.stdout.splitlines()[1].startswith(f"failed: {broken}: cannot open")


def plain_outputs(videos, tmp_path, checkpoint) -> dict[str, bytes]:
    out = tmp_path / "plain"
    assert run_cli(*command(videos, out, checkpoint), cwd=tmp_path, env=ONE_THREAD).returncode == 0
    return outputs(out)


@pytest.mark.slow
def test_two_shards_through_joblib_equal_one_process(videos, tmp_path, r21d_checkpoint):
    out = tmp_path / "out"
    result = run_cli("-m", "shard_id=range(0,2)", "num_shards=2", "hydra/launcher=joblib",
                     *command(videos, out, r21d_checkpoint), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert outputs(out) == plain_outputs(videos, tmp_path, r21d_checkpoint)
    assert {r["config"]["shard_id"] for r in read_records(str(out)) if r["event"] == "start"} == {0, 1}


@pytest.mark.slow
@pytest.mark.slurm
def test_two_shards_through_a_real_slurm_equal_one_process(videos, tmp_path, r21d_checkpoint, slurm_cluster):
    out = tmp_path / "out"
    result = run_cli(
        "-m", "shard_id=range(0,2)", "num_shards=2", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
        *command(videos, out, r21d_checkpoint), cwd=tmp_path, env={**slurm_cluster, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert outputs(out) == plain_outputs(videos, tmp_path, r21d_checkpoint)
    starts = [r for r in read_records(str(out)) if r["event"] == "start"]
    assert sorted(r["config"]["shard_id"] for r in starts) == [0, 1]
    assert sorted(extracted_per_video(out).values()) == [1, 1, 1, 1]
    assert (out / ".submitit").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["list.txt", "out", "plain", "videos"]


def test_auto_device_gives_each_local_job_its_own_gpu(monkeypatch):
    from video_features.utils.machine import share_from_environment
    from video_features.utils.network.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "6")
    assert resolve_device("auto", share_from_environment()) == torch.device("cuda", 2)
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert resolve_device("auto", share_from_environment()) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto", share_from_environment()) == torch.device("cuda")
