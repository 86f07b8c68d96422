"""The pipeline: decoding threads -> windows -> batches -> network -> one result per video.

``decode_workers`` threads (utils/decoder.py) decode videos and preprocess their frames while the
main thread cuts windows (utils/windows.py) and runs the network on batches of ``batch_size``
windows. A batch may hold windows of consecutive videos, so many short videos still fill batches.
With ``crops`` > 1 a window is (crops, C, T, h, w) and its crops run as clips of the same batch.
A video's outputs are assembled once its last window is through the network; a failure is
reported for that video alone and the others go on.
"""
import dataclasses
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from utils.decoder import Decoding, DecoderDone, Ended, Failed, Frames, Restarted, Skipped, Started, decode_jobs
from utils.inference import Inference, usable_cores
from utils.windows import Window, WindowAssembler

QUEUED_MESSAGES = 3  # per decoder: the bound on frames in flight is 3 x FRAMES_PER_MESSAGE each
LONG_VIDEO_WINDOWS = 20  # videos with more windows get their own progress bar


@dataclass
class VideoResult:
    path: str
    outputs: Optional[dict[str, np.ndarray]] = None  # None when skipped or failed
    logits: Optional[np.ndarray] = None  # (windows, classes), or (windows, crops, classes)
    error: Optional[str] = None
    skipped: Optional[str] = None  # why the video was not read: the caller's skip() answer
    seconds: Optional[float] = None  # from its first message to its result


@dataclass
class VideoInFlight:
    """A video whose windows are being cut and run: what the main thread knows of it."""

    path: str
    fps: float
    assembler: WindowAssembler
    progress: Optional[tqdm]
    features: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    times: list = field(default_factory=list)
    windows_pending: int = 0  # cut but not yet through the network
    decoded: bool = False
    frame_count: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, frames) -> list[Window]:
        """Takes preprocessed frames; returns the windows they complete."""
        windows = []
        for index, timestamp, tensor in frames:
            window = self.assembler.add(index, timestamp, tensor)
            self.frame_count = index + 1
            if window is not None:
                windows.append(window)
        self.windows_pending += len(windows)
        return windows

    def end(self) -> Optional[Window]:
        """The video is decoded; a video shorter than one window gives its padded window."""
        self.decoded = True
        padded = self.assembler.finish()
        if padded is not None:
            warnings.warn(
                f"{self.path}: {self.frame_count} frame{'s' * (self.frame_count != 1)} is shorter than one "
                f"window of {self.assembler.plan.stack}; the last frame is repeated to fill it"
            )
            self.windows_pending += 1
        return padded

    def record(self, window: Window, features: np.ndarray, logits: np.ndarray) -> None:
        # Copies, not views of the batch's output: a view keeps torch's small output block alive, and
        # that block pins the freed window buffers around it in glibc's heap (+2 buffers per window:
        # 5 GB over a 20-minute video before this copy; benchmarks/ measures it)
        self.features.append(features.copy())
        self.logits.append(logits.copy())
        self.times.append((window.start * 1000.0, window.end * 1000.0))
        self.windows_pending -= 1
        if self.progress is not None:
            self.progress.update(1)

    @property
    def done(self) -> bool:
        return self.decoded and not self.windows_pending

    def result(self, feature_type: str) -> VideoResult:
        self.close()
        outputs = {
            feature_type: np.stack(self.features).astype(np.float32),
            "timestamps_ms": np.array(self.times, dtype=np.float64),
            "fps": np.array(self.fps, dtype=np.float64),
        }
        return VideoResult(self.path, outputs=outputs, logits=np.stack(self.logits),
                           seconds=time.monotonic() - self.started)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


class Pipeline:
    def __init__(self, inference: Inference, decoding: Decoding, feature_type: str, batch_size: int = 1,
                 decode_workers: int = 1, crop_reduce: str = "none"):
        """``crop_reduce``: "mean" averages the features of a window's crops (its logits stay per crop)."""
        self.inference = inference
        self.crop_reduce = crop_reduce
        self.decoding = decoding
        self.feature_type = feature_type
        self.batch_size = batch_size
        self.decode_workers = decode_workers

    def extract_many(self, paths: Sequence[str], skip: Optional[Callable[[str], Optional[str]]] = None,
                     progress: bool = False) -> Iterator[VideoResult]:
        """Yields one VideoResult per path as each finishes: in input order with one decoder, in
        about that order with several; skipped and failed videos are reported at once.
        ``skip(path)`` is called before a video is read: a reason ('done', 'claimed', ...) skips it.
        ``progress`` shows a bar over the windows of long videos."""
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        for job in enumerate(paths):
            jobs.put(job)
        workers = min(self.decode_workers, max(1, len(paths)))
        messages: queue.Queue = queue.Queue(maxsize=QUEUED_MESSAGES * workers)
        stop = threading.Event()
        # FFmpeg's own decoding threads: as many as the cores (its default) with one decoder,
        # the cores shared out with several, so that N decoders do not start N x cores threads
        codec_threads = 0 if workers == 1 else max(1, usable_cores() // workers)
        decoding = dataclasses.replace(self.decoding, codec_threads=codec_threads)
        # Read before the decoding threads set theirs to 1 on a CPU (utils/decoder.py): torch's thread
        # count is per thread but a thread takes the last one set on its first call, this one included.
        network_threads = torch.get_num_threads()
        threads = [
            threading.Thread(target=decode_jobs, args=(decoding, jobs, skip, messages, stop), daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            yield from self._consume(messages, progress, workers)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            # torch keeps one default for new threads: threads started during the run got 1, from now on the usual count
            torch.set_num_threads(network_threads)

    def _consume(self, messages: queue.Queue, progress: bool, decoders: int) -> Iterator[VideoResult]:
        videos: dict[int, VideoInFlight] = {}  # in flight, in the order they started
        batch: list[tuple[VideoInFlight, Window]] = []
        while decoders:
            message = messages.get()
            if isinstance(message, DecoderDone):
                decoders -= 1
            elif isinstance(message, Skipped):
                yield VideoResult(message.path, skipped=message.reason)
            elif isinstance(message, (Failed, Restarted)):
                video = videos.pop(message.job, None)
                if video is not None:
                    video.close()
                    batch = [(v, w) for v, w in batch if v is not video]
                if isinstance(message, Failed):
                    yield VideoResult(message.path, error=message.error)
            elif isinstance(message, Started):
                videos[message.job] = self._started(message, progress)
            elif isinstance(message, Frames):
                video = videos[message.job]
                batch += [(video, window) for window in video.add(message.frames)]
            elif isinstance(message, Ended):
                video = videos[message.job]
                padded = video.end()
                if padded is not None:
                    batch.append((video, padded))
            while len(batch) >= self.batch_size:
                self._run_batch(batch[: self.batch_size])
                batch = batch[self.batch_size :]
            yield from self._finished(videos)
        if batch:
            self._run_batch(batch)
        yield from self._finished(videos)

    def _started(self, message: Started, progress: bool) -> VideoInFlight:
        plan = self.decoding.plan
        expected = plan.count(message.estimated_frames) if message.estimated_frames else None
        bar = None
        if progress and expected and expected >= LONG_VIDEO_WINDOWS:
            bar = tqdm(total=expected, desc=os.path.basename(message.path), unit="window", leave=False)
        return VideoInFlight(message.path, message.fps, WindowAssembler(plan, 1.0 / message.fps), bar)

    def _run_batch(self, batch: list[tuple[VideoInFlight, Window]]) -> None:
        clips = torch.stack([window.frames for _, window in batch])
        if self.inference.compiled and len(batch) < self.batch_size:
            # a compiled forward is specialised to one batch shape: pad rather than recompile
            padding = clips[-1:].expand(self.batch_size - len(batch), *clips.shape[1:])
            clips = torch.cat([clips, padding])
        multi_crop = clips.dim() == 6  # (B, crops, C, T, h, w): B windows run as B x crops clips
        features, logits = self.inference(clips.flatten(0, 1) if multi_crop else clips)
        if multi_crop:  # back to one row per window: (B, crops, D) and (B, crops, classes)
            features, logits = (output.unflatten(0, clips.shape[:2]) for output in (features, logits))
            if self.crop_reduce == "mean":
                features = features.float().mean(dim=1)
        features = features[: len(batch)].float().cpu().numpy()
        logits = logits[: len(batch)].float().cpu().numpy()
        for row, (video, window) in enumerate(batch):
            video.record(window, features[row], logits[row])

    def _finished(self, videos: dict[int, VideoInFlight]) -> Iterator[VideoResult]:
        """Results of the videos whose every window has been through the network, in start order."""
        for job, video in list(videos.items()):
            if video.done:
                del videos[job]
                yield video.result(self.feature_type)
