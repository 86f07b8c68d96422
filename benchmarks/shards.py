"""What a run pays before its first video when many are done already, and how many files it leaves:
per-video files (save_numpy) against Parquet shards. Synthetic outputs, written by the store's own
code (OutputStore.save, ShardWriter), then:

- deciding what is done: per-video files, OutputStore.status of every video (its 3 outputs loaded as
  the run checks them, its settings record read and compared), as Run.is_done does, once without
  and once with its claim taken and given up around it; shards, ShardIndex(folder) (every shard's
  footer) and then ShardIndex.status of every video;
- files left per 10,000 videos;
- reading one video back;
- with --row-group-bytes: the index and a read against the size of a shard's row groups.

Each is timed with the page cache warm (the files just written) and, with --cold (root: it writes
/proc/sys/vm/drop_caches), emptied first: a run's first start on a big dataset.

    python benchmarks/shards.py --videos 100000 --cold
    python benchmarks/shards.py --videos 20000 --row-group-bytes 1 262144 1048576
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pyarrow.parquet as pq  # noqa: E402

import video_features.utils.store.shards as shards  # noqa: E402
from video_features.utils.store.claims import Claims  # noqa: E402
from video_features.utils.store.outputs import OutputStore  # noqa: E402
from video_features.utils.store.shard_index import ShardIndex, read_video  # noqa: E402
from video_features.utils.store.shards import DEFAULT_SHARD_VIDEOS, ShardWriter  # noqa: E402

SETTINGS = {"feature_type": "r21d", "model_name": "r2plus1d_18_16_kinetics", "weights": "random", "stack_size": 16,
            "step_size": 16, "network_frames": list(range(16)), "extraction_fps": None, "fps_method": None,
            "precision": "fp32", "crops": 1, "crop_reduce": "none",
            "preprocessing": {"mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989]}}
KEYS = ["r21d", "timestamps_ms", "fps"]


def names(count: int) -> list[str]:
    """Names as a dataset's folders give them: 1,000 videos a folder."""
    return [f"class{i // 1000:03d}/video{i:07d}" for i in range(count)]


def video_outputs(windows: int, dim: int) -> dict[str, np.ndarray]:
    starts = np.arange(windows) * 640.0
    return {"r21d": np.random.default_rng(0).standard_normal((windows, dim)).astype(np.float32),
            "timestamps_ms": np.stack([starts, starts + 640.0], axis=1), "fps": np.float64(25.0)}


def files_under(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def write_per_video(folder: str, all_names: list[str], outputs: dict) -> float:
    store, start = OutputStore(folder, "save_numpy"), time.perf_counter()
    for name in all_names:
        store.save(name, outputs, SETTINGS)
    return time.perf_counter() - start


def write_shards(folder: str, all_names: list[str], outputs: dict, shard_videos: int) -> float:
    writer = ShardWriter(folder, SETTINGS, shard_videos=shard_videos, shard_seconds=float("inf"))
    start = time.perf_counter()
    for name in all_names:
        writer.append(name, f"/data/{name}.mp4", outputs)
        if writer.due:
            writer.commit()
    writer.close()
    return time.perf_counter() - start


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as file:
        file.write("3\n")


def decide_per_video(folder: str, all_names: list[str], claims: bool) -> float:
    store, start = OutputStore(folder, "save_numpy"), time.perf_counter()
    held = Claims(600) if claims else None
    for name in all_names:
        if held is not None:
            assert held.take(store.claim_path(name))
        assert store.status(name, KEYS, SETTINGS) == "done"
        if held is not None:
            held.release(store.claim_path(name))
    seconds = time.perf_counter() - start
    if held is not None:
        held.close()
    return seconds


def decide_shards(folder: str, all_names: list[str]) -> tuple[float, float]:
    """Seconds to read the index, then to look every video up in it."""
    start = time.perf_counter()
    index = ShardIndex(folder)
    read = time.perf_counter()
    for name in all_names:
        assert index.status(name, SETTINGS) == "done"
    return read - start, time.perf_counter() - read


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--shard-videos", type=int, default=DEFAULT_SHARD_VIDEOS)
    parser.add_argument("--windows", type=int, default=18, help="windows per video (18: a 10 s clip, r21d at 30 fps)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--cold", action="store_true", help="also with the page cache emptied (root)")
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary folder, removed)")
    parser.add_argument("--row-group-bytes", type=int, nargs="*", help="instead: compare these row group sizes")
    args = parser.parse_args()
    if args.row_group_bytes:
        return row_group_sizes(args)
    root = args.folder or tempfile.mkdtemp(prefix="shards-benchmark-")
    per_video, packed = os.path.join(root, "per_video"), os.path.join(root, "shards")
    all_names, outputs = names(args.videos), video_outputs(args.windows, args.dim)
    try:
        written = {"per-video files": write_per_video(per_video, all_names, outputs),
                   "shards": write_shards(packed, all_names, outputs, args.shard_videos)}
        rows = measure(per_video, packed, all_names, args.cold)
    finally:
        files = {"per-video files": files_under(per_video), "shards": files_under(packed)}
        sizes = {"per-video files": du(per_video), "shards": du(packed)}
        if args.folder is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{args.videos} videos done, {args.windows} x {args.dim} float32 features each; shard_videos="
          f"{args.shard_videos}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| | per-video files | shards |\n|---|---|---|")
    for what, values in rows:
        print(f"| {what} | " + " | ".join(values) + " |")
    print(f"| files left per 10,000 videos | {files['per-video files'] * 10_000 / args.videos:,.0f} | "
          f"{files['shards'] * 10_000 / args.videos:,.0f} |")
    print(f"| disk used | {sizes['per-video files']} | {sizes['shards']} |")
    print(f"| writing them (s) | {written['per-video files']:.1f} | {written['shards']:.1f} |")


def measure(per_video: str, packed: str, all_names: list[str], cold: bool) -> list[tuple[str, list[str]]]:
    """Each format alone: cold (caches dropped) then warm (right after, its files now cached)."""
    seconds = {}
    for form, decide in (("per-video", lambda: decide_per_video(per_video, all_names, claims=False)),
                         ("shards", lambda: decide_shards(packed, all_names))):
        for cache in ["cold", "warm"] if cold else ["warm"]:
            if cache == "cold":
                drop_caches()
            seconds[form, cache] = decide()
    rows = []
    for cache in (["cold", "warm"] if cold else ["warm"]):
        index_seconds, lookups = seconds["shards", cache]
        rows.append((f"what is done, {cache} cache (s): per-video status / shard index + lookups",
                     [f"{seconds['per-video', cache]:.2f}",
                      f"{index_seconds + lookups:.2f} ({index_seconds:.2f} + {lookups:.2f})"]))
    with_claims = decide_per_video(per_video, all_names, claims=True)
    rows.append(("the same with a claim taken and given up per video, warm (s)", [f"{with_claims:.2f}", "not needed"]))
    index, store = ShardIndex(packed), OutputStore(per_video, "save_numpy")
    sample = all_names[::max(1, len(all_names) // 50)]
    loads = [timed(lambda: [np.load(store.path(name, key)) for key in KEYS]) for name in sample]
    reads = [timed(index.read, name) for name in sample]
    rows.append(("one video read back, warm, median of 50 (ms): np.load x 3 / a kept ShardIndex's read",
                 [f"{statistics.median(loads) * 1000:.1f}", f"{statistics.median(reads) * 1000:.1f}"]))
    rows.append(("one video read back from scratch (ms): read_video (every footer, then its row group)",
                 ["", f"{timed(read_video, packed, sample[0]) * 1000:.0f}"]))
    return rows


def row_group_sizes(args) -> None:
    all_names, outputs = names(args.videos), video_outputs(args.windows, args.dim)
    print(f"{args.videos} videos, {args.windows} x {args.dim} float32 features each, "
          f"shard_videos={args.shard_videos}\n")
    print("| row group bytes | row groups a shard | footer KB | index of all (ms) | one video read, median (ms) |")
    print("|---|---|---|---|---|")
    for size in args.row_group_bytes:
        shards.ROW_GROUP_BYTES = size
        folder = tempfile.mkdtemp(prefix="shards-benchmark-")
        try:
            write_shards(folder, all_names, outputs, args.shard_videos)
            index_seconds = min(timed(ShardIndex, folder) for _ in range(3))
            index = ShardIndex(folder)
            reads = [timed(index.read, name) for name in all_names[::max(1, len(all_names) // 50)]]
            footer = pq.read_metadata(next(iter(index.shards)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"| {size:,} | {footer.num_row_groups} | {footer.serialized_size / 1024:.0f} | "
              f"{index_seconds * 1000:.0f} | {statistics.median(reads) * 1000:.1f} |")


def du(folder: str) -> str:
    done = subprocess.run(["du", "-sh", folder], capture_output=True, text=True)
    return done.stdout.split()[0] if done.returncode == 0 else "?"


if __name__ == "__main__":
    main()
