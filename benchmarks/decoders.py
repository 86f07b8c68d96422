"""Decoding speed and memory of the streaming decoder we use (PyAV) against the alternatives.

    python benchmarks/decoders.py            # 60 s 720p30 clip, 3 interleaved rounds
    python benchmarks/decoders.py --seconds 20 --rounds 5

Each decoder turns every frame of the same H.264 clip into an (H, W, 3) RGB uint8 array, in a
fresh process (so peak RSS is its own). Decoders whose package is missing are listed as such:
`pip install opencv-python-headless` adds OpenCV. Prints a Markdown table of medians.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, make_video  # noqa: E402

DECODERS = ("pyav", "ffmpeg-pipe", "opencv")


def decode_pyav(path: str) -> int:
    import av

    from video_features.utils.video.reader import VideoReader
    from video_features.utils.video.rgb import rgb_view

    rgb = av.video.reformatter.VideoReformatter()
    with VideoReader(path) as reader:
        return sum(1 for decoded in reader.decoded() if rgb_view(rgb, decoded.frame) is not None)


def decode_ffmpeg_pipe(path: str) -> int:
    import av
    import numpy as np

    with av.open(path) as container:  # only to learn the frame size
        width, height = container.streams.video[0].width, container.streams.video[0].height
    size = width * height * 3
    command = ["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frames = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=size) as process:
        while True:
            data = process.stdout.read(size)
            if len(data) < size:
                return frames
            np.frombuffer(data, np.uint8).reshape(height, width, 3)
            frames += 1


def decode_opencv(path: str) -> int:
    import cv2

    capture = cv2.VideoCapture(path)
    frames = 0
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frames += 1


def child(decoder: str, path: str) -> dict:
    decode = {"pyav": decode_pyav, "ffmpeg-pipe": decode_ffmpeg_pipe, "opencv": decode_opencv}[decoder]
    start = time.perf_counter()
    frames = decode(path)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"frames": frames, "fps": frames / seconds, "rss_mb": rss / 1024}


def run_child(decoder: str, path: str):
    done = subprocess.run([sys.executable, __file__, "--child", decoder, path], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return None if "No module named" in last else {"error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    video = make_video(args.seconds)
    results = {decoder: [] for decoder in DECODERS}
    for _ in range(args.rounds):  # interleaved, so drift of the machine hits every decoder alike
        for decoder in DECODERS:
            results[decoder].append(run_child(decoder, video))
    print(f"Machine: {machine()}; {args.seconds} s 1280x720 30 fps H.264, median of {args.rounds} rounds\n")
    print("| decoder | frames | frames/s | peak RSS MB |")
    print("|---|---|---|---|")
    for decoder, runs in results.items():
        if runs[0] is None:
            print(f"| {decoder} | not installed | | |")
        elif "error" in runs[0]:
            print(f"| {decoder} | failed: {runs[0]['error']} | | |")
        else:
            fps = statistics.median(r["fps"] for r in runs)
            rss = statistics.median(r["rss_mb"] for r in runs)
            print(f"| {decoder} | {runs[0]['frames']} | {fps:.0f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
