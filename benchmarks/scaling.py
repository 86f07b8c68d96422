"""One process against two shards through Hydra's joblib launcher and through a real Slurm; prints
a Markdown table of total times and whether the outputs are byte-identical.

    python benchmarks/scaling.py --videos 8

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8)
    args = parser.parse_args()
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
