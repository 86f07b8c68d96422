"""Throughput and memory of the extractors; prints a Markdown table.

    python benchmarks/benchmark.py                              # every feature type, on CPU
    python benchmarks/benchmark.py --feature-types r21d --device cuda --batch-size 16 --precision bf16
    python benchmarks/benchmark.py --feature-types r21d --compare "python other_tool.py {video}"

It generates its own test videos with the ffmpeg program (720p, 30 fps, 1 and 10 minutes; cached
in benchmarks/videos/) and runs on random weights (pretrained=false), so it needs no download.
Columns:
- model-only: windows/s of the network alone on preprocessed windows already in memory;
- decode ceiling: windows/s the decoder alone could feed (decoding plus RGB conversion of the
  frames the windows use);
- end-to-end: windows/s of extract_many on the 1-minute video, decoding and preprocessing included;
- peak RSS of a fresh process extracting the 1- and the 10-minute video with the same settings.
  ``--memory-step-factor K`` multiplies step_size for those two runs only: every frame is still
  decoded, but the network sees 1/K of the windows, which keeps a CPU run short.
Every measurement runs in a fresh process, one after the other.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build(args, **overrides):
    from models import build_extractor
    from utils.config import load_config

    options = {"feature_type": args.feature_type, "pretrained": False, "device": args.device,
               "batch_size": args.batch_size, "precision": args.precision, **overrides}
    if args.model_name:
        options["model_name"] = args.model_name
    return build_extractor(load_config(options))


def child_model_only(args) -> dict:
    import torch

    extractor = build(args)
    frame = extractor.preprocess(torch.zeros(1, 720, 1280, 3, dtype=torch.uint8, device=extractor.device))
    clips = torch.randn(args.batch_size, frame.shape[1], len(extractor.plan.offsets), *frame.shape[2:],
                        device=extractor.device)

    def forward():
        extractor.infer(clips)[0].float().cpu()

    forward()  # warm-up: allocations, cuDNN autotuning, compilation
    rounds, start = 0, time.perf_counter()
    while rounds < args.model_rounds or time.perf_counter() - start < args.min_seconds:
        forward()
        rounds += 1
    return {"windows_per_s": rounds * args.batch_size / (time.perf_counter() - start)}


def child_decode(args) -> dict:
    from utils.video import VideoReader

    extractor = build(args)
    start = time.perf_counter()
    frames = sum(1 for _ in VideoReader(args.video, extractor.extraction_fps).frames(extractor.plan.uses))
    seconds = time.perf_counter() - start
    return {"windows_per_s": extractor.plan.count(frames) / seconds}


def child_end_to_end(args) -> dict:
    overrides = {"step_size": args.step_size} if args.step_size else {}
    extractor = build(args, **overrides)
    start = time.perf_counter()
    (result,) = list(extractor.extract_many([args.video]))
    seconds = time.perf_counter() - start
    if result.error:
        raise SystemExit(result.error)
    windows = len(result.outputs["timestamps_ms"])
    return {"windows_per_s": windows / seconds, "windows": windows, "peak_rss_mb": peak_rss_mb()}


def run_child(args, mode: str, **extra) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--child", mode, "--feature-type", args.feature_type,
            "--device", args.device, "--batch-size", str(args.batch_size), "--precision", args.precision,
            "--model-rounds", str(args.model_rounds), "--min-seconds", str(args.min_seconds)]
    if args.model_name:
        argv += ["--model-name", args.model_name]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(template: str, video: str) -> dict:
    """Times a command and takes its peak RSS (through a fresh wrapper, so only its own children count)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "code = subprocess.run(sys.argv[1:]).returncode; "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)")
    command = shlex.split(template.format(video=shlex.quote(video)))
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    seconds, rss, code = done.stdout.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_mb": float(rss), "exit": int(code)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--model-name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--model-rounds", type=int, default=5, help="forward passes timed, at least")
    parser.add_argument("--min-seconds", type=float, default=20, help="time the model for at least this long")
    parser.add_argument("--memory-step-factor", type=int, default=1)
    parser.add_argument("--lengths", nargs=2, type=int, default=[60, 600], metavar=("SHORT", "LONG"))
    parser.add_argument("--compare", help="also time this command on the short video ({video} is its path)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--feature-type", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--step-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = {"model": child_model_only, "decode": child_decode, "e2e": child_end_to_end}[args.child](args)
        print(json.dumps(result))
        return

    short, long = (make_video(seconds) for seconds in args.lengths)
    rows = []
    for feature_type in args.feature_types:
        args.feature_type = feature_type
        from models import extractor_class

        spec = extractor_class(feature_type).models[args.model_name or next(iter(extractor_class(feature_type).models))]
        model = run_child(args, "model")
        decode = run_child(args, "decode", video=short)
        e2e = run_child(args, "e2e", video=short)
        memory_step = spec.step_size * args.memory_step_factor
        rss_short = run_child(args, "e2e", video=short, step_size=memory_step)["peak_rss_mb"]
        rss_long = run_child(args, "e2e", video=long, step_size=memory_step)["peak_rss_mb"]
        rows.append(
            f"| {feature_type} | {spec.name} | {args.batch_size} | {model['windows_per_s']:.2f} "
            f"| {decode['windows_per_s']:.1f} | {e2e['windows_per_s']:.2f} "
            f"| {e2e['windows_per_s'] / model['windows_per_s']:.2f} | {rss_short:.0f} | {rss_long:.0f} "
            f"| {rss_long / rss_short:.2f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    print(f"Machine: {machine()}; device {args.device}, precision {args.precision}, "
          f"videos 1280x720 30 fps ({args.lengths[0]} s and {args.lengths[1]} s), memory step x{args.memory_step_factor}")
    print()
    print("| feature_type | model | batch | model-only win/s | decode ceiling win/s | end-to-end win/s | "
          "e2e / model | peak RSS short MB | peak RSS long MB | long / short |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.compare:
        other = run_command(args.compare, short)
        print(f"\n`{args.compare}` on the {args.lengths[0]} s video: {other['seconds']:.1f} s, "
              f"peak RSS {other['peak_rss_mb']:.0f} MB, exit code {other['exit']}")


if __name__ == "__main__":
    main()
