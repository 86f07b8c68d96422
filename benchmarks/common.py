"""What the benchmarks share: their videos (made with the ffmpeg program, cached in benchmarks/videos/),
the machine's description, a random batch of network input, the network skipped, and the memory of
the decoding processes."""
import contextlib
import glob
import os
import platform
import re
import resource
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def random_batch(extractor, batch_size: int):
    """A batch of preprocessed windows of a 720p video's shape, with random values, as the network
    gets it: (windows x crops, C, T, h, w)."""
    import numpy as np
    import torch

    frame = extractor.preprocess(np.zeros((1, 720, 1280, 3), dtype=np.uint8))[0]
    channels, height, width = frame.shape[-3:]  # frame: (C, h, w), or (crops, C, h, w)
    return torch.randn(batch_size * extractor.options.crops, channels, len(extractor.plan.offsets), height, width,
                       device=extractor.device)


def skip_network(extractor) -> None:
    """The network replaced by one that returns zeros at once: what is left is the feed."""
    import torch

    extractor.inference._forward = lambda clips: (torch.zeros(len(clips), 1, device=clips.device),) * 2


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
