"""One process against two shards through Hydra's joblib launcher and through a real Slurm; prints
a Markdown table of total times and whether the outputs are byte-identical.

    python benchmarks/scaling.py --videos 8
    python benchmarks/scaling.py --cpu-settings --videos 4     # which settings for many videos on a CPU

The videos are copies of the samples (short: start-up is the overhead this shows), with random
weights saved once to a file so every process loads the same. Every process runs with one thread
(OMP_NUM_THREADS=1): other thread counts sum in another order and differ in the last bits. The
Slurm run starts a one-node cluster with tests/slurm_cluster.sh (root, the Debian packages) and is
left out where that cannot run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SLURM = ROOT / "tests" / "slurm_cluster.sh"


def run(args: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.rglob("*.npy"))}


def windows(out: Path) -> int:
    import numpy as np

    return sum(len(np.load(path)) for path in out.rglob("*_timestamps_ms.npy"))


def cpu_settings(args) -> None:
    """One process with torch's default thread count against one shard per core through joblib (which
    gives each worker its share of the cores), on copies of benchmark.py's 720p clip."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import machine, make_video

    from video_features.utils.machine import usable_cores

    work = Path(tempfile.mkdtemp(prefix="settings-"))
    clip = make_video(args.seconds)
    paths = []
    for index in range(args.videos):
        (work / f"v{index}.mp4").symlink_to(clip)
        paths.append(f"{work / f'v{index}.mp4'}\n")
    (work / "list.txt").write_text("".join(paths))
    env = {key: value for key, value in os.environ.items() if not key.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    cores = usable_cores()
    print(f"Machine: {machine()}; {args.videos} copies of the {args.seconds} s 1280x720 30 fps clip, random weights, "
          f"fp32, whole commands, {args.rounds} round(s), the faster kept\n")
    print(f"| feature_type | 1 process, {cores} threads: s | windows/s | {cores} shards (joblib), 1 thread each: s "
          "| windows/s | shards / 1 process |\n|---|---|---|---|---|---|")
    for feature_type in args.feature_types:
        common = [f"feature_type={feature_type}", f"file_with_video_paths={work / 'list.txt'}", "pretrained=false",
                  "device=cpu", "on_extraction=save_numpy"]
        one, shards = [], []
        for round_ in range(args.rounds):  # interleaved: a VM's speed drifts
            out = work / f"{feature_type}-one-{round_}"
            one.append(run([*common, f"output_path={out}"], work, env))
            count = windows(out)
            shards.append(run(["-m", f"shard_id=range(0,{cores})", f"num_shards={cores}", "hydra/launcher=joblib",
                               *common, f"output_path={work / f'{feature_type}-shards-{round_}'}"], work, env))
        print(f"| {feature_type} | {min(one):.1f} | {count / min(one):.2f} | {min(shards):.1f} "
              f"| {count / min(shards):.2f} | {min(one) / min(shards):.2f}x |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--cpu-settings", action="store_true",
                        help="instead: one process against one shard per core, on copies of a 720p clip")
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--seconds", type=int, default=20, help="length of the 720p clip (--cpu-settings)")
    parser.add_argument("--rounds", type=int, default=1, help="--cpu-settings: rounds, the faster kept")
    args = parser.parse_args()
    if args.cpu_settings:
        cpu_settings(args)
        return
    import torch
    from torchvision.models.video import r2plus1d_18

    work = Path(tempfile.mkdtemp(prefix="scaling-"))
    samples = [ROOT / "sample" / "a.mp4", ROOT / "sample" / "b.mp4"]
    (work / "videos").mkdir()
    for index in range(args.videos):
        shutil.copy(samples[index % 2], work / "videos" / f"v{index}.mp4")
    (work / "list.txt").write_text("".join(f"{p}\n" for p in sorted((work / "videos").iterdir())))
    weights = work / "random.pth"
    torch.save(r2plus1d_18(weights=None).state_dict(), weights)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = [f"file_with_video_paths={work / 'list.txt'}", f"weights_path={weights}", "device=cpu",
              "on_extraction=save_numpy"]
    rows = [("1 process", run([*common, f"output_path={work / 'plain'}"], work, env), "reference")]
    reference = outputs(work / "plain")
    seconds = run(["-m", "shard_id=range(0,2)", "num_shards=2", "hydra/launcher=joblib", *common,
                   f"output_path={work / 'joblib'}"], work, env)
    rows.append(("2 shards, hydra/launcher=joblib", seconds, str(outputs(work / "joblib") == reference)))
    if os.geteuid() == 0 and shutil.which("slurmd", path=os.environ["PATH"] + ":/usr/sbin"):
        cluster = {**env, "SLURM_CLUSTER_DIR": str(work / "slurm")}
        subprocess.run(["bash", str(SLURM), "start"], env=cluster, check=True)
        try:
            cluster["SLURM_CONF"] = str(work / "slurm" / "slurm.conf")
            seconds = run(["-m", "shard_id=range(0,2)", "num_shards=2", "hydra/launcher=slurm",
                           "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                           *common, f"output_path={work / 'slurm_out'}"], work, cluster)
            rows.append(("2 shards, hydra/launcher=slurm (one-node Slurm)", seconds,
                         str(outputs(work / "slurm_out") == reference)))
        finally:
            subprocess.run(["bash", str(SLURM), "stop"], env=cluster, check=False)
    print(f"{args.videos} videos (copies of sample/a.mp4 and b.mp4), r21d, random weights, 1 thread per process, "
          f"{os.cpu_count()} cores\n")
    print("| run | total seconds | outputs equal to 1 process |\n|---|---|---|")
    for name, seconds, equal in rows:
        print(f"| {name} | {seconds:.1f} | {equal} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
