"""The GPU check: in a few minutes, for every feature type, what the pipeline feeds a GPU.

    bash benchmarks/gpu.sh                     # on a GPU machine (prepares the videos, then runs this)
    python benchmarks/gpu_check.py --device cpu --batch-size 1 --precision fp32 --long-seconds 60 \\
        --feed-seconds 40 --clips 4 --workers 1 2          # the same check, small, anywhere

Per feature type (default models, random weights, in one process, so that CUDA starts once):
- network alone: windows/s of the network on preprocessed windows already on the device;
- feed alone: windows/s of the whole pipeline with the network replaced by one that returns at
  once, on one --feed-seconds 720p video, with each --workers count of decoding processes ("all":
  decode_workers=auto), and the main thread's CPU time per batch;
- end to end (decode_workers=auto): one --long-seconds 720p video, and --clips copies of the 20 s
  clip; each against the smaller of the network alone and the feed alone with all workers;
- peak GPU memory over the end-to-end runs (torch.cuda.max_memory_allocated).
Measurements stop, marked "-", when --budget seconds are spent, so the table always comes out.

The videos are made from benchmarks/videos/720p30_20s.mp4 (benchmark.py makes it with the ffmpeg
program; a GPU machine without the program gets it carried) by repeating its packets, so no
encoder is needed.
"""
import argparse
import os
import sys
import time

import av

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchmark import ROOT, VIDEO_DIR, machine, random_batch, skip_network  # noqa: E402

CLIP = os.path.join(VIDEO_DIR, "720p30_20s.mp4")


def repeated(source: str, seconds: int) -> str:
    """``source``'s packets repeated, timestamps shifted, into a video of about ``seconds`` (no re-encode)."""
    path = os.path.join(VIDEO_DIR, f"720p30_{seconds}s_repeated.mp4")
    if os.path.exists(path):
        return path
    with av.open(source) as container:
        stream = container.streams.video[0]
        span = stream.frames * round(1 / (stream.average_rate * stream.time_base))
        copies = max(1, round(seconds / float(span * stream.time_base)))
    with av.open(path + ".part.mp4", "w") as output:
        for copy in range(copies):
            with av.open(source) as container:
                stream = container.streams.video[0]
                if copy == 0:
                    target = output.add_stream_from_template(stream)
                for packet in container.demux(stream):
                    if packet.size:
                        packet.pts += copy * span
                        packet.dts += copy * span
                        packet.stream = target
                        output.mux(packet)
    os.replace(path + ".part.mp4", path)
    return path


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def timed_extraction(extractor, paths) -> tuple[float, int, float]:
    """Seconds, windows and the main thread's CPU seconds of extracting ``paths``."""
    start, main_thread = time.perf_counter(), time.thread_time()
    windows = 0
    for result in extractor.extract_many(paths):
        if result.error:
            raise SystemExit(f"{result.path}: {result.error}")
        windows += len(result.outputs["timestamps_ms"])
    return time.perf_counter() - start, windows, time.thread_time() - main_thread


def check(args, feature_type: str, budget: Budget) -> str:
    import torch

    from utils.config import load_config
    from utils.extractor import Extractor

    def build(workers):
        return Extractor(load_config({"feature_type": feature_type, "device": args.device, "pretrained": False,
                                      "batch_size": args.batch_size, "precision": args.precision,
                                      "decode_workers": workers}))

    cuda = args.device.startswith("cuda")
    cells = []
    extractor = build("auto")
    all_workers = extractor.pipeline.decode_workers  # what decode_workers=auto resolved to
    clips = random_batch(extractor, args.batch_size)
    extractor.inference(clips)  # warm-up: cuDNN's autotuning, allocations
    forwards, start = 0, time.perf_counter()
    while forwards < 3 or time.perf_counter() - start < args.min_seconds:
        extractor.inference(clips)[0].float().cpu()
        forwards += 1
    network = forwards * args.batch_size / (time.perf_counter() - start)
    cells.append(f"{network:.1f}")

    feed_video = repeated(CLIP, args.feed_seconds)
    feeds, main_ms = [], []
    for workers in args.workers:
        if budget.left() < 30:
            feeds.append("-")
            main_ms.append("-")
            continue
        fed = build(all_workers if workers == "all" else int(workers))
        skip_network(fed)
        seconds, windows, main_thread = timed_extraction(fed, [feed_video])
        feeds.append(f"{windows / seconds:.1f}")
        main_ms.append(f"{1000 * main_thread / max(1, windows / args.batch_size):.2f}")
    cells += feeds + main_ms

    feed_all = feeds[-1]  # the last --workers count: all of them by default
    bound = min(network, float(feed_all)) if feed_all != "-" else network
    if cuda:
        torch.cuda.reset_peak_memory_stats(extractor.device)
    for paths in ([repeated(CLIP, args.long_seconds)], [CLIP] * args.clips):
        if budget.left() < 30:
            cells += ["-", "-"]
            continue
        seconds, windows, _ = timed_extraction(extractor, paths)
        cells += [f"{windows / seconds:.1f}", f"{windows / seconds / bound:.2f}"]
    peak = torch.cuda.max_memory_allocated(extractor.device) / 2**20 if cuda else float("nan")
    cells.append(f"{peak:.0f}")
    return f"| {feature_type} | {extractor.model_name} | {all_workers} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--workers", nargs="+", default=["1", "4", "all"], help="decoding processes for the feed")
    parser.add_argument("--feed-seconds", type=int, default=120)
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time the network alone at least this long")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which measurements are skipped")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if not os.path.exists(CLIP):
        from benchmark import make_video

        make_video(20)
    budget = Budget(args.budget)
    print(f"Machine: {machine()}; device {args.device}, precision {args.precision}, batch {args.batch_size}; "
          f"feed alone on one {args.feed_seconds} s 720p30 H.264 video; end to end on one {args.long_seconds} s "
          f"video and on {args.clips} clips of 20 s; random weights\n")
    feeds = " | ".join(f"feed {w} win/s" for w in args.workers)
    mains = " | ".join(f"main ms/batch {w}" for w in args.workers)
    print(f"| feature_type | model | all workers | network win/s | {feeds} | {mains} | e2e long win/s | long / bound "
          f"| e2e clips win/s | clips / bound | peak GPU MB |")
    print("|" + "---|" * (9 + 2 * len(args.workers)), flush=True)
    for feature_type in args.feature_types:
        print(check(args, feature_type, budget), flush=True)
    print("\nbound: the smaller of the network alone and the feed alone with the last workers count")


if __name__ == "__main__":
    main()
