"""Throughput and memory of the extractors; prints a Markdown table.

    python benchmarks/benchmark.py                              # every feature type, on CPU
    python benchmarks/benchmark.py --feature-types r21d --device cuda --batch-size 16 --precision bf16
    python benchmarks/benchmark.py --feature-types r21d --compare "cd ../other && python tool.py {video} {output}" \
        --compare-video sample/a.mp4 --compare-features "{output}/a_r21d.npy" --weights-path r2plus1d_18.pth

It generates its own test videos with the ffmpeg program (720p, 30 fps, 1 and 10 minutes; cached
in benchmarks/videos/) and runs on random weights (pretrained=false), so it needs no download.
Columns:
- model-only: windows/s of the network alone on preprocessed windows already in memory;
- decode ceiling: windows/s the decoder alone could feed (decoding, skipping what the pipeline
  skips, plus RGB conversion of the frames the windows use);
- end-to-end: windows/s of extract_many on the 1-minute video, decoding and preprocessing included
  (after one untimed forward pass, like model-only, so compilation is not counted);
- peak RSS of a fresh process extracting the 1- and the 10-minute video with the same settings.
  ``--memory-step-factor K`` multiplies step_size for those two runs only: every frame is still
  decoded, but the network sees 1/K of the windows, which keeps a CPU run short;
- with ``--precision bf16|fp16``, the error: the largest relative L2 error of a window's features
  against fp32 on the same random weights, over the 1-minute video's windows (memory step).
Every measurement runs in a fresh process, one after the other. Model-only and end-to-end are
measured in ``--rounds`` interleaved rounds (a VM's speed drifts by 30 % over minutes); the table
shows their medians and the median of the per-round ratios.

``--feed-workers 1 2 4`` (instead of the table) prints the windows/s the pipeline can feed the
network with that many ``decode_workers``, the network skipped: the ceiling a GPU run can reach.

``--crops 1 3 10`` (instead of the table) prints, for each crop count, windows/s and crops/s
(windows x crops) of the network alone and end to end on the short video, in interleaved rounds.

``--compare CMD`` (instead of the table) runs another tool (a shell command; ``{video}`` and
``{output}`` are replaced by the video and an empty output folder) and our command line on
``--compare-video``, and prints both
tools' wall time, windows/s and peak RSS. With ``--compare-features`` (the other tool's .npy, under
``{output}``) it also prints the largest difference between the two tools' features; give both the
same weights with ``--weights-path`` (ours) and the other tool's own weight lookup (e.g. the file
copied into the torch hub cache).
"""
import argparse
import contextlib
import glob
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from video_features.models.registry import families  # noqa: E402  (needs ROOT on the path)

VIDEO_DIR = os.path.join(ROOT, "benchmarks", "videos")


def make_video(seconds: int) -> str:
    """A 1280x720 30 fps H.264 clip with moving detail and noise, at a realistic 4 Mbit/s."""
    path = os.path.join(VIDEO_DIR, f"720p30_{seconds}s.mp4")
    if not os.path.exists(path):
        os.makedirs(VIDEO_DIR, exist_ok=True)
        source = "testsrc2=size=1280x720:rate=30,noise=alls=4:allf=t"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264",
             "-preset", "veryfast", "-b:v", "4M", "-pix_fmt", "yuv420p", path + ".part.mp4"],
            check=True,
        )
        os.replace(path + ".part.mp4", path)
    return path


def make_small_video(seconds: int) -> str:
    """A 64x64 10 fps H.264 clip: hundreds of windows at the default stack and step decode fast."""
    path = os.path.join(VIDEO_DIR, f"64p10_{seconds}s.mp4")
    if not os.path.exists(path):
        os.makedirs(VIDEO_DIR, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x64:rate=10:duration={seconds}",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", path + ".part.mp4"],
            check=True,
        )
        os.replace(path + ".part.mp4", path)
    return path


def memory_table(args) -> list[str]:
    """Peak RSS of a fresh process extracting a 64x64 10 fps video of each length, default settings."""
    lengths = args.memory_lengths
    header = " | ".join(f"{n // 60} min windows | {n // 60} min peak RSS MB" for n in lengths)
    ratios = " | ".join(f"{n // 60} / {lengths[0] // 60} min" for n in lengths[1:])
    lines = [f"Machine: {machine()}; device {args.device}, precision {args.precision}, batch {args.batch_size}; "
             "64x64 10 fps H.264 (testsrc), default stack and step", "",
             f"| feature_type | model | {header} | {ratios} |", "|" + "---|" * (2 + 2 * len(lengths) + len(lengths) - 1)]
    for feature_type in args.feature_types:
        args.feature_type = feature_type
        runs = [run_child(args, "e2e", video=make_small_video(n)) for n in lengths]
        cells = " | ".join(f"{run['windows']} | {run['peak_rss_mb']:.0f}" for run in runs)
        ratio = " | ".join(f"{run['peak_rss_mb'] / runs[0]['peak_rss_mb']:.2f}" for run in runs[1:])
        lines.append(f"| {feature_type} | {families()[feature_type].checkpoint(args.model_name).name} | {cells} | {ratio} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


class DecoderMemory:
    """The largest peak RSS (VmHWM) among this process's decoding processes, read while they run.
    getrusage's figure for children would count, for each, the parent's pages it held between fork
    and exec (about the parent's whole RSS)."""

    def __init__(self):
        self.peak_kib = 0
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            for children in glob.glob("/proc/self/task/*/children"):
                with contextlib.suppress(OSError):
                    for pid in open(children).read().split():
                        with contextlib.suppress(OSError):
                            status = open(f"/proc/{pid}/status").read()
                            if "video_features.utils.video.worker" in open(f"/proc/{pid}/cmdline").read().replace("\0", " "):
                                hwm = re.search(r"VmHWM:\s+(\d+)", status)
                                self.peak_kib = max(self.peak_kib, int(hwm.group(1)) if hwm else 0)
            time.sleep(0.2)


def peak_rss_mb(decoders: DecoderMemory) -> float:
    """This process's peak plus its largest decoding process's (on a CPU there is one)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + decoders.peak_kib) / 1024  # Linux reports KiB


def weights_options(args) -> dict:
    return {"weights_path": args.weights_path, "pretrained": True} if args.weights_path else {"pretrained": False}


def build(args, **overrides):
    from video_features import Extractor

    options = {"feature_type": args.feature_type, "device": args.device, "batch_size": args.batch_size,
               "precision": args.precision, "compile": args.compile, "crops": args.crop_count,
               **weights_options(args), **overrides}
    if args.model_name:
        options["model_name"] = args.model_name
    return Extractor(**options)


def random_batch(extractor, batch_size: int):
    """A batch of preprocessed windows of a 720p video's shape, with random values, as the network
    gets it: (windows x crops, C, T, h, w)."""
    import numpy as np
    import torch

    frame = extractor.preprocess(np.zeros((1, 720, 1280, 3), dtype=np.uint8))[0]
    channels, height, width = frame.shape[-3:]  # frame: (C, h, w), or (crops, C, h, w)
    return torch.randn(batch_size * extractor.options.crops, channels, len(extractor.plan.offsets), height, width,
                       device=extractor.device)


def child_model_only(args) -> dict:
    extractor = build(args)
    clips = random_batch(extractor, args.batch_size)

    def forward():
        extractor.inference(clips)[0].float().cpu()

    forward()  # warm-up: allocations, cuDNN autotuning, compilation
    rounds, start = 0, time.perf_counter()
    while rounds < args.model_rounds or time.perf_counter() - start < args.min_seconds:
        forward()
        rounds += 1
    return {"windows_per_s": rounds * args.batch_size / (time.perf_counter() - start)}


def child_decode(args) -> dict:
    import av

    from video_features.utils.video.reader import VideoReader
    from video_features.utils.video.rgb import rgb_view

    extractor = build(args)
    start = time.perf_counter()
    plan, rgb, frames = extractor.plan, av.video.reformatter.VideoReformatter(), 0
    with VideoReader(args.video, extractor.options.extraction_fps) as reader:
        for decoded in reader.decoded(plan.uses, plan.leaves_frames_out):
            if decoded.wanted and decoded.frame is not None:
                rgb_view(rgb, decoded.frame)
            frames += 1
    seconds = time.perf_counter() - start
    return {"windows_per_s": extractor.plan.count(frames) / seconds}


def child_end_to_end(args) -> dict:
    overrides = {"step_size": args.step_size} if args.step_size else {}
    extractor = build(args, **overrides)
    extractor.inference(random_batch(extractor, args.batch_size))  # the same untimed warm-up as model-only
    decoders = DecoderMemory()
    start = time.perf_counter()
    (result,) = list(extractor.extract_many([args.video]))
    seconds = time.perf_counter() - start
    if result.error:
        raise SystemExit(result.error)
    windows = len(result.outputs["timestamps_ms"])
    return {"windows_per_s": windows / seconds, "windows": windows, "peak_rss_mb": peak_rss_mb(decoders)}


def skip_network(extractor) -> None:
    """The network replaced by one that returns zeros at once: what is left is the feed."""
    import torch

    extractor.inference._forward = lambda clips: (torch.zeros(len(clips), 1, device=clips.device),) * 2


def child_feed(args) -> dict:
    """Windows/s the pipeline delivers with the network skipped: decoding, preprocessing and window
    assembly of --feed-videos copies of the video with --decode-workers processes; and the main
    thread's CPU time per batch."""
    extractor = build(args, decode_workers=args.decode_workers)
    skip_network(extractor)
    start, main_thread = time.perf_counter(), time.thread_time()
    results = list(extractor.extract_many([args.video] * args.feed_videos))
    seconds, main_thread = time.perf_counter() - start, time.thread_time() - main_thread
    windows = sum(len(r.outputs["timestamps_ms"]) for r in results)
    return {"windows_per_s": windows / seconds, "main_ms_per_batch": 1000 * main_thread / (windows / args.batch_size)}


def child_precision_error(args) -> dict:
    """The largest relative L2 error of a window's features at --precision against fp32, same weights."""
    import numpy as np
    import torch

    features = []
    for precision in ("fp32", args.precision):
        torch.manual_seed(0)  # the same random weights for both
        extractor = build(args, precision=precision, step_size=args.step_size)
        (result,) = list(extractor.extract_many([args.video]))
        features.append(result.outputs[args.feature_type])
    full, reduced = features
    return {"relative_error": float((np.linalg.norm(reduced - full, axis=1) / np.linalg.norm(full, axis=1)).max())}


def run_child(args, mode: str, **extra) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--child", mode, "--feature-type", args.feature_type,
            "--device", args.device, "--batch-size", str(args.batch_size), "--precision", args.precision,
            "--model-rounds", str(args.model_rounds), "--min-seconds", str(args.min_seconds),
            "--crop-count", str(args.crop_count)]
    if args.weights_path:
        argv += ["--weights-path", args.weights_path]
    if args.compile:
        argv.append("--compile")
    if args.model_name:
        argv += ["--model-name", args.model_name]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(command: str) -> dict:
    """Wall time and peak RSS of a shell command (through a fresh wrapper, so only its own children count)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "code = subprocess.run(sys.argv[1], shell=True, stdout=subprocess.DEVNULL).returncode; "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)")
    done = subprocess.run([sys.executable, "-c", wrapper, command], capture_output=True, text=True)
    seconds, rss, code = done.stdout.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_mb": float(rss), "exit": int(code)}


def compare_tools(args) -> list[str]:
    """Our command line and another tool on one video: time, windows/s, peak RSS, feature difference."""
    import numpy as np

    video = os.path.abspath(args.compare_video)
    model = args.model_name or families()[args.feature_type].default.name
    stem = os.path.splitext(os.path.basename(video))[0]
    rows, features = [], {}
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as theirs_dir:
        weights = " ".join(f"{key}={value}" for key, value in weights_options(args).items())
        ours = (f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(ROOT, 'main.py'))} "
                f"feature_type={args.feature_type} model_name={model} device={args.device} {weights} "
                f"batch_size={args.batch_size} 'video_paths=[{video}]' on_extraction=save_numpy "
                f"output_path={shlex.quote(ours_dir)} input_root={shlex.quote(os.path.dirname(video))}")
        theirs = args.compare.format(video=shlex.quote(video), output=shlex.quote(theirs_dir))
        ours_file = os.path.join(ours_dir, args.feature_type, model, f"{stem}_{args.feature_type}.npy")
        theirs_file = args.compare_features.format(output=theirs_dir) if args.compare_features else None
        for name, command, output in (("this tool", ours, ours_file), ("other tool", theirs, theirs_file)):
            result = run_command(command)
            if output and os.path.exists(output):
                features[name] = np.load(output)
            windows = len(features[name]) if name in features else None
            rate = f"{windows / result['seconds']:.2f}" if windows else "?"
            rows.append(f"| {name} | {result['exit']} | {result['seconds']:.1f} | {windows or '?'} | {rate} "
                        f"| {result['peak_rss_mb']:.0f} |")
    lines = [f"Same video ({args.compare_video}), whole commands, start-up included. Other tool: `{args.compare}`",
             "", "| tool | exit code | seconds | windows | windows/s | peak RSS MB |", "|---|---|---|---|---|---|", *rows]
    if len(features) == 2:
        a, b = features["this tool"], features["other tool"]
        if a.shape == b.shape:
            lines += ["", f"Largest feature difference: {np.abs(a - b).max():.2e} (shape {a.shape})"]
        else:
            lines += ["", f"Feature shapes differ: {a.shape} against {b.shape}"]
    return lines


def feed_table(args) -> list[str]:
    short = make_video(args.lengths[0])
    copies = f"{args.feed_videos} copies of the" if args.feed_videos > 1 else "one"
    lines = [f"Machine: {machine()}; device {args.device}, batch {args.batch_size}; {copies} "
             f"{args.lengths[0]} s 1280x720 30 fps video, network skipped, medians of {args.rounds} rounds", "",
             "| feature_type | " + " | ".join(f"{n} decode_workers win/s" for n in args.feed_workers)
             + " | " + " | ".join(f"main thread ms per batch, {n}" for n in args.feed_workers) + " |",
             "|" + "---|" * (1 + 2 * len(args.feed_workers))]
    for feature_type in args.feature_types:
        args.feature_type = feature_type
        runs = {n: [] for n in args.feed_workers}
        for _ in range(args.rounds):  # interleaved, like the table's rounds
            for n in args.feed_workers:
                runs[n].append(run_child(args, "feed", video=short, decode_workers=n, feed_videos=args.feed_videos))
        rates = [statistics.median(run["windows_per_s"] for run in r) for r in runs.values()]
        main_ms = [statistics.median(run["main_ms_per_batch"] for run in r) for r in runs.values()]
        lines.append(f"| {feature_type} | " + " | ".join(f"{rate:.1f}" for rate in rates) + " | "
                     + " | ".join(f"{ms:.1f}" for ms in main_ms) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def crops_table(args) -> list[str]:
    """Windows/s and crops/s (windows x crops) of the network alone and end to end, per crop count."""
    short = make_video(args.lengths[0])
    lines = [f"Machine: {machine()}; device {args.device}, precision {args.precision}, batch {args.batch_size} "
             f"windows; {args.lengths[0]} s 1280x720 30 fps video; medians of {args.rounds} rounds", "",
             "| feature_type | model | crops | model-only win/s | model-only crops/s | end-to-end win/s "
             "| end-to-end crops/s |", "|" + "---|" * 7]
    for feature_type in args.feature_types:
        args.feature_type = feature_type
        model = families()[feature_type].checkpoint(args.model_name).name
        rates = {crops: ([], []) for crops in args.crops}
        for _ in range(args.rounds):  # interleaved: a VM's speed drifts over minutes
            for crops in args.crops:
                args.crop_count = crops
                rates[crops][0].append(run_child(args, "model")["windows_per_s"])
                rates[crops][1].append(run_child(args, "e2e", video=short)["windows_per_s"])
        for crops, (models, e2es) in rates.items():
            model_rate, e2e_rate = statistics.median(models), statistics.median(e2es)
            lines.append(f"| {feature_type} | {model} | {crops} | {model_rate:.2f} | {model_rate * crops:.2f} "
                         f"| {e2e_rate:.2f} | {e2e_rate * crops:.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    args.crop_count = 1
    return lines


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores; {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def throughput_table(args) -> list[str]:
    """The main table: model-only, decode ceiling, end-to-end, peak RSS (and the reduced precision's error)."""
    short, long = (make_video(seconds) for seconds in args.lengths)
    rows = []
    for feature_type in args.feature_types:
        args.feature_type = feature_type
        spec = families()[feature_type].checkpoint(args.model_name)
        models, e2es = [], []
        for _ in range(args.rounds):
            models.append(run_child(args, "model")["windows_per_s"])
            e2es.append(run_child(args, "e2e", video=short)["windows_per_s"])
        ratio = statistics.median(e / m for e, m in zip(e2es, models))
        decode = run_child(args, "decode", video=short)
        memory_step = spec.step_size * args.memory_step_factor
        rss_short = run_child(args, "e2e", video=short, step_size=memory_step)["peak_rss_mb"]
        rss_long = run_child(args, "e2e", video=long, step_size=memory_step)["peak_rss_mb"]
        error = ""
        if args.precision != "fp32":
            error = f" {run_child(args, 'error', video=short, step_size=memory_step)['relative_error']:.1e} |"
        rows.append(
            f"| {feature_type} | {spec.name} | {args.batch_size} | {statistics.median(models):.2f} "
            f"| {decode['windows_per_s']:.1f} | {statistics.median(e2es):.2f} "
            f"| {ratio:.2f} | {rss_short:.0f} | {rss_long:.0f} "
            f"| {rss_long / rss_short:.2f} |{error}"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    lines = [f"Machine: {machine()}; device {args.device}, precision {args.precision}, compile {args.compile}, "
             f"videos 1280x720 30 fps ({args.lengths[0]} s and {args.lengths[1]} s), "
             f"memory step x{args.memory_step_factor}, medians of {args.rounds} rounds", ""]
    error_column = f" {args.precision} error |" if args.precision != "fp32" else ""
    lines.append("| feature_type | model | batch | model-only win/s | decode ceiling win/s | end-to-end win/s | "
                 f"e2e / model | peak RSS short MB | peak RSS long MB | long / short |{error_column}")
    lines.append("|" + "---|" * (10 + bool(error_column)))
    return lines + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-types", nargs="+", help="default: every registered feature type")
    parser.add_argument("--model-name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", action="store_true", help="compile=true (each process compiles first, untimed)")
    parser.add_argument("--model-rounds", type=int, default=5, help="forward passes timed, at least")
    parser.add_argument("--min-seconds", type=float, default=15, help="time the model for at least this long")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of model-only and end-to-end")
    parser.add_argument("--memory-step-factor", type=int, default=1)
    parser.add_argument("--lengths", nargs=2, type=int, default=[60, 600], metavar=("SHORT", "LONG"))
    parser.add_argument("--weights-path", help="a checkpoint for our extractor instead of random weights")
    parser.add_argument("--compare", help="another tool's shell command; {video} and {output} are replaced")
    parser.add_argument("--compare-video", help="the video for --compare (default: the short video)")
    parser.add_argument("--compare-features", help="the other tool's feature .npy, under {output}")
    parser.add_argument("--feed-workers", nargs="+", type=int, metavar="N",
                        help="instead of the table: the rate the pipeline feeds with N decode_workers (network skipped)")
    parser.add_argument("--feed-videos", type=int, default=4, help="copies of the short video for --feed-workers")
    parser.add_argument("--memory-lengths", nargs="+", type=int, metavar="SECONDS",
                        help="instead of the table: peak RSS over 64x64 10 fps videos of these lengths, default settings")
    parser.add_argument("--crops", nargs="+", type=int, metavar="N",
                        help="instead of the table: windows/s and crops/s with crops=N, network alone and end to end")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--crop-count", type=int, default=1, help=argparse.SUPPRESS)  # a child's crops option
    parser.add_argument("--feature-type", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--step-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--decode-workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.feature_types = args.feature_types or list(families())

    if args.child:
        children = {"model": child_model_only, "decode": child_decode, "e2e": child_end_to_end,
                    "error": child_precision_error, "feed": child_feed}
        result = children[args.child](args)
        print(json.dumps(result))
        return

    if args.compare:
        args.feature_type = args.feature_types[0]
        args.compare_video = args.compare_video or make_video(args.lengths[0])
        print(f"Machine: {machine()}; device {args.device}\n")
        print("\n".join(compare_tools(args)))
        return

    if args.feed_workers:
        print("\n".join(feed_table(args)))
        return

    if args.memory_lengths:
        print("\n".join(memory_table(args)))
        return

    if args.crops:
        print("\n".join(crops_table(args)))
        return

    print("\n".join(throughput_table(args)))


if __name__ == "__main__":
    main()
