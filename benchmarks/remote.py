"""Remote reads (utils/video/remote.py) against local disk, on the same videos: what is read per
video against its size, and how fast every frame decodes from a local path, from a local nginx,
and from that nginx behind a proxy that adds latency to every request. Prints Markdown tables.

    python benchmarks/remote.py [--seconds 30] [--bytes-seconds 120] [--rounds 5] [--latency-ms 50] [--block-mib 4]

Needs nginx and the ffmpeg program (``setup.sh --test`` installs both as root). The servers run on
this machine: nginx and the proxy (a Python thread per connection, tests/fault_proxy.py) take CPU
from the decoder, which is what a local cache or sidecar would too.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fault_proxy import FaultProxy  # noqa: E402
from tests.servers import running_nginx  # noqa: E402
from video_features.utils.video.frame_index import read_index  # noqa: E402
from video_features.utils.video.remote import open_remote  # noqa: E402
from video_features.utils.video.remote_retry import Policy  # noqa: E402

CONTAINERS = {  # the same encoded streams in each, remuxed (-c copy)
    "MP4, index first (faststart)": ("faststart.mp4", ["-movflags", "+faststart"]),
    "MP4, index at the end": ("moov_at_end.mp4", []),
    "MKV": ("video.mkv", []),
    "MPEG-TS": ("video.ts", ["-f", "mpegts"]),
}


def make_videos(folder: Path, seconds: float, size: str) -> None:
    """H.264 at about 4 Mbit/s (noise keeps the test pattern from compressing to nothing), 30 fps,
    with an AAC track, in each container of CONTAINERS."""
    folder.mkdir()
    source = folder / "source.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                    "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M",
                    "-maxrate", "4M", "-bufsize", "8M", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(source)], check=True)
    for name, extra in CONTAINERS.values():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", *extra, str(folder / name)],
                       check=True)
    source.unlink()


def decode(source) -> int:
    """Decodes every video frame (FFmpeg's threads, as the extractor does); the count."""
    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def frames_per_second(open_source) -> tuple[float, float]:
    """(frames/s, CPU seconds of this process: the decoder's threads and the reads' together)."""
    started, cpu = time.perf_counter(), time.process_time()
    if isinstance(open_source, str):
        frames = decode(open_source)
    else:
        with open_source() as file:
            frames = decode(file)
    return frames / (time.perf_counter() - started), time.process_time() - cpu


def bytes_read(proxy: FaultProxy, url: str, size: int, policy: Policy, index: bool = False) -> tuple[int, int]:
    """(body bytes, requests) the proxy counted for a decode of every frame (``index``: for the
    frame index's pass over the packets, utils/video/frame_index.py)."""
    proxy.reset()
    if index:
        read_index(lambda: open_remote(url, size, policy), 0)
    else:
        with open_remote(url, size, policy) as file:
            decode(file)
    counts = proxy.counts()
    return counts.body_bytes, counts.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="of the 1280x720 videos decoded for speed")
    parser.add_argument("--bytes-seconds", type=float, default=120, help="of the 640x360 videos whose reads are counted")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--block-mib", type=float, default=4)
    args = parser.parse_args()
    policy = Policy(block_size=int(args.block_mib * 2**20))
    with tempfile.TemporaryDirectory() as folder:
        root, state = Path(folder) / "served", Path(folder) / "nginx"
        root.mkdir()
        state.mkdir()
        make_videos(root / "speed", args.seconds, "1280x720")
        make_videos(root / "bytes", args.bytes_seconds, "640x360")
        with running_nginx(root, state) as nginx:
            proxy = FaultProxy(nginx.url)
            try:
                bytes_table(root / "bytes", proxy, policy, args)
                speed_table(root / "speed", nginx.url, proxy, policy, args)
            finally:
                proxy.stop()


def bytes_table(root: Path, proxy: FaultProxy, policy: Policy, args) -> None:
    print(f"{args.bytes_seconds:g} s of 640x360 30 fps H.264 (~4 Mbit/s) + AAC; blocks of {args.block_mib:g} MiB, "
          f"{policy.cached_blocks} kept, read-ahead of one block; the size passed in (no HEAD)\n")
    print("| container | size MB | bytes read / size (requests), decoding | bytes read / size (requests), index pass |")
    print("|---|---|---|---|")
    for label, (name, _) in CONTAINERS.items():
        size = (root / name).stat().st_size
        url = f"{proxy.url}/bytes/{name}"
        decoded, requests = bytes_read(proxy, url, size, policy)
        indexed, index_requests = bytes_read(proxy, url, size, policy, index=True)
        print(f"| {label} | {size / 1e6:.1f} | {decoded / size:.3f} ({requests}) | {indexed / size:.3f} ({index_requests}) |")


def speed_table(root: Path, nginx: str, proxy: FaultProxy, policy: Policy, args) -> None:
    modes = {"local path": lambda name: str(root / name),
             "local file object": lambda name: (lambda: open(root / name, "rb")),
             "http (nginx)": lambda name: (lambda: open_remote(f"{nginx}/speed/{name}", None, policy)),
             f"http + {args.latency_ms:g} ms": lambda name: (lambda: open_remote(f"{proxy.url}/speed/{name}", None, policy))}
    rates = {(label, mode): [] for label in CONTAINERS for mode in modes}
    for round_number in range(args.rounds + 1):  # interleaved: the VM's speed drifts over minutes
        for label, (name, _) in CONTAINERS.items():
            for mode, source in modes.items():
                proxy.set_latency(args.latency_ms / 1000 if "+" in mode else 0)
                rate = frames_per_second(source(name))
                if round_number:  # the first round warms the page cache and the servers
                    rates[label, mode].append(rate)
    print(f"\n{args.seconds:g} s of 1280x720 30 fps H.264 (~4 Mbit/s) + AAC, size unknown (one HEAD); "
          f"frames/s decoding every frame, median of {args.rounds} interleaved rounds:\n")
    print("| container | " + " | ".join(modes) + " | http / local | http + latency / local | CPU s, local / http |")
    print("|---|" + "---|" * (len(modes) + 3))
    for label in CONTAINERS:
        local, _, http, slow = medians = [statistics.median(rate for rate, _ in rates[label, mode]) for mode in modes]
        cpu = [statistics.median(seconds for _, seconds in rates[label, mode]) for mode in modes]
        print(f"| {label} | " + " | ".join(f"{rate:.0f}" for rate in medians)
              + f" | {http / local:.2f} | {slow / local:.2f} | {cpu[0]:.2f} / {cpu[2]:.2f} |")


if __name__ == "__main__":
    main()
