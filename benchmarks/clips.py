"""Datasets of short clips, end to end: what reading many short videos costs against the same frames
as one long video, from local disk and from a local nginx (with added latency per request), and
where the per-video cost goes. Prints Markdown tables.

    python benchmarks/clips.py [--clips 200] [--seconds 10] [--network-clips 20] [--rounds 2]

The clips are made with the ffmpeg program (320x240, 30 fps, H.264, key frame every second) and
joined without re-encoding into the long video, so both hold the same frames. "feed": the network
skipped (what the decoding, preprocessing and scheduling deliver); "network": r21d on the CPU.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import machine, skip_network  # noqa: E402

from tests.fault_proxy import FaultProxy  # noqa: E402
from tests.servers import running_nginx  # noqa: E402


def make_clips(folder: Path, count: int, seconds: float) -> tuple[list[Path], Path]:
    clips = []
    for number in range(count):
        clip = folder / f"clip{number:04d}.mp4"
        source = f"testsrc2=size=320x240:rate=30,hue=h={number % 360}"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264",
                        "-g", "30", "-pix_fmt", "yuv420p", str(clip)], check=True)
        clips.append(clip)
    (folder / "parts.txt").write_text("".join(f"file '{clip}'\n" for clip in clips))
    subprocess.run(["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(folder / "parts.txt"),
                    "-c", "copy", str(folder / "long.mp4")], check=True)
    return clips, folder / "long.mp4"


def windows_per_second(extractor, paths: list[str]) -> float:
    start, windows = time.perf_counter(), 0
    for result in extractor.extract_many(paths):
        assert result.error is None, f"{result.path}: {result.error}"
        windows += len(result.outputs["timestamps_ms"])
    return windows / (time.perf_counter() - start)


def echo(connection) -> None:
    """Sends back every message until the other end closes."""
    try:
        while True:
            connection.send(connection.recv())
    except (EOFError, OSError):
        pass


def task_messages(clip: Path):
    """A video's messages between the pipeline and a decoding process (OpenVideo, Opened,
    SegmentDone; its SlotFilled ones count with its frames), each sent and answered through a socket
    pair with a thread at the other end, as utils/video/pool.py sends them."""
    import socket
    import threading
    from multiprocessing.connection import Connection

    from video_features.utils.video.completeness import DecodeStats
    from video_features.utils.video.protocol import Opened, OpenVideo, SegmentDone
    from video_features.utils.video.reader import VideoReader
    from video_features.utils.video.segments import whole

    ours, theirs = (Connection(end.detach()) for end in socket.socketpair())
    threading.Thread(target=echo, args=(theirs,), daemon=True).start()

    with VideoReader(str(clip)) as reader:
        opened = Opened(0, 0, reader.fps, reader.estimated_frames, reader.completeness, [whole(None)])

    def exchange(clip: Path, number: int) -> None:
        for message in (OpenVideo(number, 0, str(clip)), opened, SegmentDone(number, 0, 0, DecodeStats(), {})):
            ours.send(message)
            ours.recv()

    return exchange


def where_it_goes(clips: list[Path], folder: Path, url: str) -> list[str]:
    """Per-video costs measured one by one, milliseconds per video (medians over the clips)."""
    import numpy as np

    from video_features.utils.store.claims import Claims
    from video_features.utils.store.outputs import OutputStore
    from video_features.utils.video.frame_index import read_index
    from video_features.utils.video.reader import VideoReader

    claims, store = Claims(600), OutputStore(str(folder / "store"), "save_numpy")
    exchange = task_messages(clips[0])
    outputs = {"r21d": np.zeros((18, 512), np.float32), "timestamps_ms": np.zeros((18, 2)), "fps": np.array(30.0)}
    steps = {
        "open and probe (local)": lambda clip, n: VideoReader(str(clip)).close(),
        "open and probe (http)": lambda clip, n: VideoReader(f"{url}/{clip.name}").close(),
        "frame index (local)": lambda clip, n: read_index(str(clip), 0),
        "a task's messages to a decoding process and back": exchange,
        "claim taken and given up": lambda clip, n: (claims.take(str(folder / f"c{n}.claim")),
                                                     claims.release(str(folder / f"c{n}.claim"))),
        "outputs and record written": lambda clip, n: store.save(f"v{n}", outputs, {"settings": n}),
        "done check of saved outputs": lambda clip, n: store.state(f"v{n}", list(outputs), {"settings": n}),
    }
    lines = ["| per video | ms |", "|---|---|"]
    for name, step in steps.items():
        times = []
        for number, clip in enumerate(clips[:50]):
            start = time.perf_counter()
            step(clip, number)
            times.append((time.perf_counter() - start) * 1000)
        lines.append(f"| {name} | {statistics.median(times):.1f} |")
    claims.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--network-clips", type=int, default=20, help="clips of the runs with the network")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args()
    from video_features import Extractor

    with tempfile.TemporaryDirectory() as temporary:
        root, state = Path(temporary) / "served", Path(temporary) / "nginx"
        root.mkdir()
        state.mkdir()
        clips, long = make_clips(root, args.clips, args.seconds)
        with running_nginx(root, state) as nginx:
            proxy = FaultProxy(nginx.url)
            try:
                sources = {"local": lambda name: str(root / name), "http": lambda name: f"{nginx.url}/{name}",
                           f"http + {args.latency_ms:g} ms": lambda name: f"{proxy.url}/{name}"}
                rows = {}
                for network in (False, True):
                    extractor = Extractor("r21d", device="cpu", pretrained=False)
                    if not network:
                        skip_network(extractor)
                    count = args.clips if not network else args.network_clips
                    names = [clip.name for clip in clips[:count]]
                    cases = {f"{count} clips of {args.seconds:g} s": names}
                    if not network:
                        cases["one long video, the same frames"] = [long.name]
                    for round_number in range(args.rounds):  # interleaved: the VM drifts over minutes
                        for case, case_names in cases.items():
                            for source, path in sources.items():
                                proxy.set_latency(args.latency_ms / 1000 if "+" in source else 0)
                                rate = windows_per_second(extractor, [path(name) for name in case_names])
                                rows.setdefault((network, case, source), []).append(rate)
                    extractor.close()
                report(rows, sources, args)
                print("\nWhere a short video's own cost goes (r21d's outputs of a 10 s clip; medians of 50):\n")
                print("\n".join(where_it_goes(clips, Path(temporary), nginx.url)))
            finally:
                proxy.stop()


def report(rows: dict, sources: dict, args) -> None:
    print(f"Machine: {machine()}; r21d, device cpu, random weights, decode_workers=auto (1 on a CPU); "
          f"windows/s, median of {args.rounds} interleaved rounds\n")
    print("| network | input | " + " | ".join(sources) + " | http / local | http + latency / local |")
    print("|---|---|" + "---|" * (len(sources) + 2))
    for (network, case, _), _ in list(rows.items())[::len(sources)]:
        rates = [statistics.median(rows[network, case, source]) for source in sources]
        print(f"| {'r21d' if network else 'skipped'} | {case} | " + " | ".join(f"{rate:.1f}" for rate in rates)
              + f" | {rates[1] / rates[0]:.2f} | {rates[2] / rates[0]:.2f} |")
    feed = {case: statistics.median(rows[False, case, "local"]) for (network, case, source) in rows
            if not network and source == "local"}
    clips, long = list(feed.values())
    print(f"\nFeed, clips against one long video of the same frames, local: {clips / long:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
