"""The GPU check: in a few minutes, for every feature type, what the pipeline feeds a GPU.

    bash benchmarks/gpu.sh                     # on a GPU machine (after `bash benchmarks/gpu.sh prepare` here)
    python benchmarks/gpu_check.py --device cpu --batch-size 1 --precision fp32 --long-seconds 60 \\
        --feed-seconds 40 --clips 4 --workers 1 2          # the same check, small, anywhere

Per feature type (default models, random weights, in one process, so that CUDA starts once):
- network alone: windows/s of the network on preprocessed windows already on the device, with
  cuDNN's default algorithms and with ``cudnn_benchmark=true`` (the option's measurement);
- feed alone: windows/s of the whole pipeline with the network replaced by one that returns at
  once, on one 720p video long enough for every process to get segments (--feed-seconds, at least
  20 s per process), with each --workers count of decoding processes ("all": decode_workers=auto),
  and the main thread's CPU milliseconds per batch (waits for the device block, so they are work);
- end to end (decode_workers=auto): one --long-seconds 720p video, and --clips copies of the 20 s
  clip; each against the smaller of the network alone and the feed alone with all workers;
- peak GPU memory over the end-to-end runs (torch.cuda.max_memory_allocated).

Each figure is printed as soon as it is measured; a figure that fails prints its error in its cell
and the check goes on; figures left when --budget seconds are spent print "-". The table comes
last. The videos are the 20 s clip that `gpu.sh prepare` makes and carries, and copies of its
packets (no encoder, so no ffmpeg program, is needed on the GPU machine).
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
SECONDS_PER_PROCESS = 20  # of feed video: two segments' worth (MIN_SEGMENT_SECONDS is 10)


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


class Row:
    """One feature type's cells, each printed as soon as it is measured."""

    def __init__(self, feature_type: str, budget: Budget, planted_failure: str):
        self.feature_type, self.budget, self.planted_failure = feature_type, budget, planted_failure
        self.cells: dict[str, str] = {}
        self.numbers: dict[str, float] = {}

    def measure(self, name: str, work, digits: int = 1) -> None:
        """Runs ``work()`` for the cell ``name`` (a number, or None for "-"); an error is the cell's."""
        if self.budget.left() < 30:
            text = "-"
        else:
            try:
                if name == self.planted_failure:
                    raise RuntimeError(f"a failure planted in {name} (--plant-failure)")
                value = work()
            except Exception as error:  # noqa: BLE001  one figure's failure is that figure's
                line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                text = f"error: {type(error).__name__}: {line}"[:160]
            else:
                text = "-" if value is None else f"{value:.{digits}f}"
                if value is not None:
                    self.numbers[name] = value
        self.cells[name] = text
        print(f"{self.feature_type}: {name} = {text}", flush=True)

    def ratio(self, name: str, over: str, bound: float | None) -> None:
        self.measure(name, lambda: None if over not in self.numbers or bound is None else self.numbers[over] / bound, 2)


def timed_extraction(extractor, paths) -> tuple[float, int, float]:
    """Seconds, windows and the main thread's CPU seconds of extracting ``paths``."""
    start, main_thread = time.perf_counter(), time.thread_time()
    windows = 0
    for result in extractor.extract_many(paths):
        if result.error:
            raise RuntimeError(f"{result.path}: {result.error}")
        windows += len(result.outputs["timestamps_ms"])
    return time.perf_counter() - start, windows, time.thread_time() - main_thread


def network_alone(extractor, batch_size: int, min_seconds: float, cudnn_benchmark: bool) -> float:
    import torch

    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        inference = extractor.inference
        clips = random_batch(extractor, batch_size).to(inference.input_dtype)  # as the pipeline builds a batch
        if inference.channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        inference(clips)  # warm-up: allocations, cuDNN's algorithm search
        forwards, start = 0, time.perf_counter()
        while forwards < 3 or time.perf_counter() - start < min_seconds:
            inference(clips)[0].float().cpu()
            forwards += 1
        return forwards * batch_size / (time.perf_counter() - start)
    finally:
        torch.backends.cudnn.benchmark = False


def check(args, feature_type: str, budget: Budget) -> Row:
    import torch

    from video_features import Extractor

    def build(workers):
        return Extractor(feature_type, device=args.device, pretrained=False, batch_size=args.batch_size,
                         precision=args.precision, decode_workers=workers)

    row = Row(feature_type, budget, args.plant_failure)
    extractor = build("auto")
    all_workers = extractor.pipeline.decode_workers  # what decode_workers=auto resolved to
    row.cells["all workers"] = str(all_workers)
    print(f"{feature_type}: all workers = {all_workers}", flush=True)
    cuda = extractor.device.type == "cuda"
    row.measure("network win/s", lambda: network_alone(extractor, args.batch_size, args.min_seconds, False))
    row.measure("network, cudnn.benchmark win/s",
                lambda: network_alone(extractor, args.batch_size, args.min_seconds, True) if cuda else None)

    feed_seconds = max(args.feed_seconds, SECONDS_PER_PROCESS * all_workers)
    for workers in args.workers:
        count = all_workers if workers == "all" else int(workers)

        def feed(count=count, workers=workers):
            with build(count) as fed:
                skip_network(fed)
                seconds, windows, main_thread = timed_extraction(fed, [repeated(CLIP, feed_seconds)])
            row.numbers[f"main ms/batch {workers}"] = 1000 * main_thread / max(1, windows / args.batch_size)
            return windows / seconds

        row.measure(f"feed {workers} win/s", feed)
        row.measure(f"main ms/batch {workers}", lambda workers=workers: row.numbers.get(f"main ms/batch {workers}"), 2)

    last_feed = row.numbers.get(f"feed {args.workers[-1]} win/s")
    network = row.numbers.get("network win/s")
    bound = min(x for x in (network, last_feed) if x is not None) if network or last_feed else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(extractor.device)
    for name, paths in (("long", lambda: [repeated(CLIP, args.long_seconds)]), ("clips", lambda: [CLIP] * args.clips)):
        def end_to_end(paths=paths):
            seconds, windows, _ = timed_extraction(extractor, paths())
            return windows / seconds

        row.measure(f"e2e {name} win/s", end_to_end)
        row.ratio(f"{name} / bound", f"e2e {name} win/s", bound)
    row.measure("peak GPU MB", lambda: torch.cuda.max_memory_allocated(extractor.device) / 2**20 if cuda else None, 0)
    extractor.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--workers", nargs="+", default=["1", "4", "all"], help="decoding processes for the feed")
    parser.add_argument("--feed-seconds", type=int, default=120, help=f"at least {SECONDS_PER_PROCESS} s per process")
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time the network alone at least this long")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which measurements are skipped")
    parser.add_argument("--plant-failure", default="", metavar="CELL",
                        help="make this cell fail, to see that the table survives it (tests/test_gpu_check.py)")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if not os.path.exists(CLIP):
        raise SystemExit(f"error: {CLIP} is missing: run `bash benchmarks/gpu.sh prepare` where the ffmpeg program is, "
                         "and carry it")
    budget = Budget(args.budget)
    print(f"Machine: {machine()}; device {args.device}, precision {args.precision}, batch {args.batch_size}; "
          f"feed alone on one 720p30 H.264 video of at least {args.feed_seconds} s ({SECONDS_PER_PROCESS} s per "
          f"process); end to end on one {args.long_seconds} s video and on {args.clips} clips of 20 s; random weights\n",
          flush=True)
    columns = ["all workers", "network win/s", "network, cudnn.benchmark win/s",
               *[f"feed {w} win/s" for w in args.workers], *[f"main ms/batch {w}" for w in args.workers],
               "e2e long win/s", "long / bound", "e2e clips win/s", "clips / bound", "peak GPU MB"]
    rows = []
    for feature_type in args.feature_types:
        try:
            rows.append(check(args, feature_type, budget))
        except Exception as error:  # noqa: BLE001  building the model failed: the other types go on
            print(f"{feature_type}: error: {type(error).__name__}: {error}", flush=True)
            row = Row(feature_type, budget, "")
            row.cells = {column: "error" for column in columns}
            rows.append(row)
    print("\n| feature_type | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for row in rows:
        print(f"| {row.feature_type} | " + " | ".join(row.cells.get(column, "-") for column in columns) + " |")
    print("\nbound: the smaller of the network alone and the feed alone with the last workers count")


if __name__ == "__main__":
    main()
