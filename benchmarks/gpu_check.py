"""The GPU check: in a few minutes, for every feature type, whether the device's features are right
and what the pipeline feeds it.

    bash benchmarks/gpu.sh                     # on a GPU machine (after `bash benchmarks/gpu.sh prepare` here);
                                               # on a machine without CUDA it runs the small CPU configuration
    python benchmarks/gpu_check.py --device cpu --batch-size 1 --precision fp32 --long-seconds 60 \\
        --feed-seconds 40 --clips 4 --workers 2 --samples sample/b.mp4   # the same check, small, anywhere

Default models, random weights, in one process (CUDA starts once), in two passes so that the key
figures come first when time runs short. The first pass, over every feature type:
- correctness: the device's fp32 features of --samples (two sample clips and the 20 s clip) against
  the CPU's, with 1 and all decoding processes, and the bf16 error (benchmarks/gpu_correctness.py);
- network alone: windows/s of the network on preprocessed windows already on the device;
- feed alone with all processes (decode_workers=auto): windows/s of the pipeline with the network
  replaced by one that returns at once, on one 720p video long enough for every process to get
  segments (--feed-seconds, at least 20 s per process), and the main thread's CPU milliseconds per
  batch (waits for the device block, so they are work);
- start-up: seconds of a first extraction (of sample/b.mp4) that starts the decoding processes and
  pins their slots, and whether CUDA pinned them (a refusal is only a warning of the pipeline);
- end to end (decode_workers=auto): one --long-seconds 720p video, and --clips copies of the 20 s
  clip; each against the bound, the smaller of the network alone and the feed alone with all processes;
- peak GPU memory over the end-to-end runs (torch.cuda.max_memory_allocated).
The second pass: the feed alone with each --workers count; the network with cudnn_benchmark=true,
in a fresh process (PyTorch keeps cuDNN's choice of algorithm per layer shape for the process's
life, so timed after the other cells it would not search at all); the network in fp32.

Each timed extraction runs after an untimed one that starts the decoding processes: start-up is
its own cell. Each cell has its own time limit (--cell-seconds, --cell-limit) and is printed as it
ends; on a limit or SIGTERM every thread's stack is dumped (benchmarks/timed_cells.py). The table
comes last, with a legend and the targets. The videos are the 20 s clip that `gpu.sh prepare` makes
and carries, and copies of its packets (no encoder, so no ffmpeg program, is needed on the GPU machine).
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import machine  # noqa: E402
from gpu_cells import CLIP, SAMPLES, SECONDS_PER_PROCESS, Subject, cells, child_network, plan  # noqa: E402
from timed_cells import Table  # noqa: E402

E2E_TARGET = 0.8  # end to end, of the bound
R21D_BF16_TARGET = 300  # windows/s end to end, r21d in bf16 on a GPU


def driver_version(path: str = "/proc/driver/nvidia/version") -> str:
    """The NVIDIA driver's version, from the kernel module (no library needed), else nvidia-smi."""
    try:
        with open(path) as version:
            found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", version.read())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def versions() -> str:
    import torch

    if not torch.cuda.is_available():
        return "CUDA, cuDNN, NVIDIA driver: n/a (no CUDA device)"
    return f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, NVIDIA driver {driver_version()}"


def header(args) -> str:
    samples = " ".join(os.path.relpath(path) for path in args.samples)
    return (f"Machine: {machine()}; {versions()}\n"
            f"device {args.device}, precision {args.precision}, batch {args.batch_size}; correctness on {samples}; "
            f"feed alone on one 720p30 H.264 video of at least {args.feed_seconds} s ({SECONDS_PER_PROCESS} s per "
            f"process); end to end on one {args.long_seconds} s video and on {args.clips} clips of 20 s; "
            f"random weights; each cell within {args.cell_seconds:.0f} s, {args.budget:.0f} s in all\n")


def targets(table: Table, args) -> list[str]:
    """Each target, met or not, from the table's figures."""
    lines = [f"Targets: end to end >= {E2E_TARGET}x the bound (the smaller of the network alone and the feed "
             "alone with all processes); r21d bf16 end to end on a GPU >= "
             f"{R21D_BF16_TARGET} windows/s."]
    for feature_type in table.rows:
        ratios = {name: table.number(feature_type, f"{name} / bound") for name in ("long", "clips")}
        lines.append(f"- {feature_type}, end to end / bound: " + ", ".join(
            f"{name} " + ("not measured" if r is None else f"{r:.2f} " + ("met" if r >= E2E_TARGET else "NOT met"))
            for name, r in ratios.items()))
    if "r21d" in table.rows:
        cuda = args.device.startswith("cuda") and args.precision == "bf16"
        rates = {name: table.number("r21d", f"e2e {name} win/s") for name in ("long", "clips")}
        lines.append("- r21d bf16 end to end: " + ("n/a (not bf16 on CUDA)" if not cuda else ", ".join(
            f"{name} " + ("not measured" if r is None else f"{r:.0f} win/s " + (
                "met" if r >= R21D_BF16_TARGET else "NOT met")) for name, r in rates.items())))
    return lines


def arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--samples", nargs="+", default=SAMPLES, help="the correctness cell's videos")
    parser.add_argument("--workers", nargs="+", default=["1", "4"],
                        help="decoding processes for the feed in the second pass (the first has all: auto)")
    parser.add_argument("--feed-seconds", type=int, default=120, help=f"at least {SECONDS_PER_PROCESS} s per process")
    parser.add_argument("--long-seconds", type=int, default=600)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time the network alone at least this long")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which cells are skipped")
    parser.add_argument("--cell-seconds", type=float, default=120.0, help="a cell's time limit")
    parser.add_argument("--cell-limit", action="append", default=[], metavar="COLUMN=SECONDS",
                        help="the limit of the cell that fills COLUMN, instead of --cell-seconds")
    parser.add_argument("--plant-failure", default="", metavar="COLUMN",
                        help="make the cell of this column fail, to see that the table survives it")
    parser.add_argument("--plant-hang", default="", metavar="COLUMN",
                        help="make the cell of this column hang, to see its limit and the stacks")
    parser.add_argument("--plant-wrong-feature", action="store_true",
                        help="make the device give one window's features 1 %% off, to see the correctness cell say so")
    parser.add_argument("--child-network", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        args.limits = {k.strip(): float(v) for k, v in (item.rsplit("=", 1) for item in args.cell_limit)}
    except ValueError:
        parser.error(f"--cell-limit takes COLUMN=SECONDS; got {args.cell_limit}")
    return args


def main() -> None:
    args = arguments()
    if args.child_network:
        return child_network(args)
    if not os.path.exists(CLIP):
        raise SystemExit(f"error: {CLIP} is missing: run `bash benchmarks/gpu.sh prepare` where the ffmpeg program is, "
                         "and carry it")
    columns = [column for cell in cells(args.workers) for column in cell.columns]
    table = Table(args.feature_types, columns, args.budget, args.cell_seconds, args.limits,
                  args.plant_failure, args.plant_hang)
    table.guard()
    print(header(args), flush=True)
    subjects = {feature_type: Subject(args, feature_type) for feature_type in args.feature_types}
    previous = None
    for feature_type, cell in plan(args.feature_types, args.workers):
        subject = subjects[feature_type]
        if previous is not None and previous is not subject:
            previous.close()  # its decoding processes: one feature type's at a time
        previous = subject
        table.measure(feature_type, cell.columns, lambda: cell.work(subject, table))
    table.print()
    print("\n" + "\n".join(targets(table, args)), flush=True)


if __name__ == "__main__":
    main()
