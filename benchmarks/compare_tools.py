"""``benchmark.py --compare CMD``: our command line and another tool (video_features, say) on one
video, as whole commands: wall time, windows/s, peak RSS and the largest feature difference."""
import os
import shlex
import subprocess
import sys
import tempfile

from common import ROOT

from video_features.models.registry import families


def weights_options(args) -> dict:
    return {"weights_path": args.weights_path, "pretrained": True} if args.weights_path else {"pretrained": False}


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
