"""Short videos and the end of a run: what FFmpeg's threads per job and decoding processes kept for
the extractor's life change. Each case runs in a fresh process, in this tree and (--before) in
another checkout of the project, on the same videos, and prints windows/s or seconds.

    python benchmarks/short_videos.py --before /tmp/before   # /tmp/before: `git worktree add /tmp/before <rev>`

Cases (r21d, random weights, device cpu, decode_workers=2 unless --decode-workers):
- one short video: one --short-seconds 720p clip;
- 20 short clips: one extract_many over 20 copies;
- tail of a run: a --long-seconds video then a short one (the last job runs alone);
- extract() in a loop: Extractor.extract on each of the 20 clips, one call per clip (the Python API's way);
each with the network skipped (the feed: what the changes act on) and with it (end to end on a CPU,
where the network takes the cores: it must not lose).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = ["one short video", "20 short clips", "tail of a run", "extract() in a loop"]
CLIPS = 20


def child(tree: str, case: str, network: bool, short: str, long: str, decode_workers: int) -> dict:
    """Runs one case in ``tree`` (this function runs in a fresh process there)."""
    # the package video_features is ``tree`` here, in this process and its decoding processes
    links = tempfile.mkdtemp()
    os.symlink(tree, os.path.join(links, "video_features"))
    sys.path.insert(0, links)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (links, os.environ.get("PYTHONPATH")) if p)
    import torch

    import video_features
    from video_features import Extractor

    assert os.path.realpath(video_features.__file__).startswith(os.path.realpath(tree)), video_features.__file__

    torch.manual_seed(0)
    extractor = Extractor("r21d", device="cpu", pretrained=False, decode_workers=decode_workers)
    if not network:
        extractor.inference._forward = lambda clips: (torch.zeros(len(clips), 1),) * 2
    paths = {"one short video": [short], "20 short clips": [short] * CLIPS, "tail of a run": [long, short],
             "extract() in a loop": [short] * CLIPS}[case]
    start, windows = time.perf_counter(), 0
    if case == "extract() in a loop":
        for path in paths:
            windows += len(extractor.extract(path)["timestamps_ms"])
    else:
        for result in extractor.extract_many(paths):
            assert result.error is None, result.error
            windows += len(result.outputs["timestamps_ms"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "windows": windows}


def measure(tree: str, case: str, network: bool, args) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {HERE!r}); from short_videos import child; "
            f"print(json.dumps(child({tree!r}, {case!r}, {network}, {args.short!r}, {args.long!r}, "
            f"{args.decode_workers})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="another checkout of the project, measured the same way")
    parser.add_argument("--short-seconds", type=int, default=3)
    parser.add_argument("--long-seconds", type=int, default=40)
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, trees alternating; medians reported")
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from common import ROOT, machine, make_video

    if shutil.which("ffmpeg") is None:
        raise SystemExit("error: the ffmpeg program is needed to make the clips")
    args.short, args.long = make_video(args.short_seconds), make_video(args.long_seconds)
    trees = {"now": ROOT, **({"before": os.path.abspath(args.before)} if args.before else {})}
    print(f"Machine: {machine()}; r21d, device cpu, random weights, decode_workers={args.decode_workers}; "
          f"720p30 H.264 clips of {args.short_seconds} s and one of {args.long_seconds} s; medians of "
          f"{args.rounds} rounds\n", flush=True)
    print("| case | network | " + " | ".join(f"{name} win/s" for name in trees)
          + (" | now / before |" if args.before else " |"))
    print("|---|---|" + "---|" * (len(trees) + bool(args.before)))
    for case in args.cases:
        for network in (False, True):
            rates = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    result = measure(tree, case, network, args)
                    rates[name].append(result["windows"] / result["seconds"])
            medians = {name: statistics.median(values) for name, values in rates.items()}
            ratio = f" | {medians['now'] / medians['before']:.2f}x |" if args.before else " |"
            print(f"| {case} | {'yes' if network else 'skipped'} | "
                  + " | ".join(f"{medians[name]:.1f}" for name in trees) + ratio, flush=True)


if __name__ == "__main__":
    main()
