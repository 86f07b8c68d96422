"""The shared base of every extractor: decoding, windows, batching, device, outputs, errors.

A model file subclasses ``BaseExtractor`` and supplies only its network, its weights and its
preprocessing (the hooks at the top of the class). Everything else lives here:

- background threads (``decode_workers`` of them, one video each at a time) decode videos
  (``utils.video``), preprocess the frames on the target device and hand them to the main thread
  through a bounded queue, so decoding and preprocessing overlap the network and memory stays flat
  whatever a video's length;
- the main thread cuts windows (``utils.windows``) and runs the network on batches of
  ``batch_size`` windows; a batch may hold windows of consecutive videos, so many short videos
  still fill batches;
- a video's outputs are assembled once its last window is through the network. A failure is
  reported for that video alone and the others go on.
"""
import contextlib
import os
import queue
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from utils.config import ConfigError, load_config, resolve_decode_workers, resolve_device, usable_cores
from utils.output import SAVERS, OutputStore, describe_outputs, describe_predictions, output_names
from utils.video import Frame, SkipMismatch, VideoError, VideoReader, reencode_to_fps
from utils.weights import load_state_file, load_strict, resolve_checkpoint
from utils.windows import Window, WindowAssembler, WindowPlan

FRAMES_PER_MESSAGE = 8  # preprocessed frames per queue message
QUEUED_MESSAGES = 3  # the bound on frames in flight: 8 x 3 preprocessed frames
LONG_VIDEO_WINDOWS = 20  # videos with more windows get their own progress bar


@dataclass(frozen=True)
class ModelSpec:
    """One pretrained network: where its weights are and how it cuts windows by default."""

    name: str
    weights_url: str
    stack_size: int
    step_size: int
    weights_sha256_prefix: Optional[str] = None


class ExtractionError(Exception):
    """A video could not be extracted. The message is one line that names the cause."""


@dataclass
class VideoResult:
    path: str
    outputs: Optional[dict[str, np.ndarray]] = None  # None when skipped or failed
    logits: Optional[np.ndarray] = None  # (windows, classes)
    error: Optional[str] = None
    skipped: bool = False


@dataclass
class _Video:
    """The main thread's state for a video whose windows are in flight."""

    path: str
    fps: float
    assembler: WindowAssembler
    progress: Optional[tqdm]
    features: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    times: list = field(default_factory=list)
    windows_in_batch: int = 0
    decoded: bool = False
    frame_count: int = 0


@dataclass
class RunSummary:
    extracted: int = 0
    skipped: int = 0
    failed: int = 0


class _Stopped(Exception):
    pass


class BaseExtractor:
    feature_type: str = ""
    models: dict[str, ModelSpec] = {}  # the first is the default
    channels_last: bool = False  # 3D convnets run faster on channels_last_3d tensors (benchmarks/)

    # ---- what a model file provides ------------------------------------------------------
    def frame_offsets(self, stack_size: int) -> Sequence[int]:
        """The frames of a window the network sees; all of them unless a model subsamples."""
        return range(stack_size)

    def build_network(self) -> torch.nn.Module:
        raise NotImplementedError

    def load_weights(self, network: torch.nn.Module, checkpoint_path: str) -> None:
        load_strict(network, load_state_file(checkpoint_path), checkpoint_path)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames on the device -> (N, C, h, w) float network input."""
        raise NotImplementedError

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, h, w) windows -> (features (B, D), logits (B, classes))."""
        raise NotImplementedError

    def class_names(self) -> Optional[list[str]]:
        """Names of the logits' classes for show_pred, or None where they are not known."""
        return None

    # ---- set-up ------------------------------------------------------------------------------
    def __init__(self, cfg: Union[DictConfig, dict, Sequence[str]]):
        if not isinstance(cfg, DictConfig):
            cfg = load_config(cfg if isinstance(cfg, dict) else list(cfg))
        self.cfg = cfg
        if cfg.model_name not in self.models:
            raise ConfigError(
                f"unknown model_name '{cfg.model_name}' for feature_type={self.feature_type}; "
                f"choose one of: {', '.join(self.models)}"
            )
        self.spec = self.models[cfg.model_name]
        self.model_name = self.spec.name
        self.device = resolve_device(cfg.device)
        stack = cfg.stack_size or self.spec.stack_size
        step = cfg.step_size or self.spec.step_size
        self.plan = WindowPlan(stack, step, tuple(self.frame_offsets(stack)))
        self.extraction_fps = cfg.extraction_fps
        self.batch_size = cfg.batch_size
        self.decode_workers = resolve_decode_workers(cfg.decode_workers, self.device)
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        if self.device.type == "cuda" and self.autocast_dtype is None:
            # cuDNN runs fp32 convolutions in TF32 by default: features 1e-3 off the reference
            # (measured on an H200 against video_features). fp32 means fp32; bf16 is the fast option.
            torch.backends.cudnn.allow_tf32 = False
        self.network = self.build_network().eval()
        checkpoint = resolve_checkpoint(
            self.spec.weights_url, cfg.weights_path, cfg.pretrained, self.spec.weights_sha256_prefix
        )
        if checkpoint is not None:
            self.load_weights(self.network, checkpoint)
        self.network.to(self.device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last_3d)
        self._forward = self.forward
        if cfg.compile:
            from torch._inductor import config as inductor_config

            # freezing folds the weights into the graph as constants: the big win for inference
            inductor_config.freezing = True
            self._forward = torch.compile(self.forward, dynamic=False)

    def infer(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on a batch of preprocessed windows, as the pipeline runs it."""
        if self.channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self._forward(clips)

    @property
    def output_keys(self) -> list[str]:
        return [self.feature_type, "timestamps_ms", "fps"]

    # ---- the public API --------------------------------------------------------------------
    def extract(self, path: str) -> dict[str, np.ndarray]:
        """Features of one video: {feature_type: (N, D), 'timestamps_ms': (N, 2), 'fps': ()}."""
        (result,) = self.extract_many([path])
        if result.error:
            raise ExtractionError(f"{path}: {result.error}")
        return result.outputs

    def extract_many(
        self, paths: Sequence[str], skip: Optional[Callable[[str], bool]] = None, progress: bool = False
    ) -> Iterator[VideoResult]:
        """Yields one VideoResult per path as each finishes: in input order with one decoder, in
        about that order with several (``decode_workers``); skipped and failed videos are reported
        at once. ``skip(path)`` true marks a video skipped without reading it. ``progress`` shows a
        bar over the windows of long videos."""
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        for job in enumerate(paths):
            jobs.put(job)
        workers = min(self.decode_workers, max(1, len(paths)))
        messages: queue.Queue = queue.Queue(maxsize=QUEUED_MESSAGES * workers)
        stop = threading.Event()
        # FFmpeg's own decoding threads: as many as the cores (its default) with one decoder,
        # the cores shared out with several, so that N decoders do not start N x cores threads
        codec_threads = 0 if workers == 1 else max(1, usable_cores() // workers)
        decoders = [
            threading.Thread(target=self._decode_jobs, args=(jobs, skip, messages, stop, codec_threads), daemon=True)
            for _ in range(workers)
        ]
        for decoder in decoders:
            decoder.start()
        try:
            yield from self._consume(messages, progress, workers)
        finally:
            stop.set()
            for decoder in decoders:
                decoder.join()

    def run(self, paths: Sequence[str]) -> RunSummary:
        """What the command line does: extract every video and print or save its outputs.

        Videos whose outputs all exist and load are skipped. A failure is one line on stderr
        naming the file and the cause; the other videos go on.
        """
        names = output_names(paths)
        store = None
        if self.cfg.on_extraction in SAVERS:
            output_dir = os.path.join(self.cfg.output_path, self.feature_type, self.model_name)
            store = OutputStore(output_dir, self.cfg.on_extraction)
        summary = RunSummary()
        skip = (lambda path: store.is_done(names[path], self.output_keys)) if store else None
        with tqdm(total=len(paths), unit="video", desc=self.feature_type) as bar:
            for result in self.extract_many(paths, skip, progress=True):
                bar.update(1)
                if result.skipped:
                    summary.skipped += 1
                    continue
                if result.error is None:
                    try:
                        self._deliver(names[result.path], result, store)
                        summary.extracted += 1
                        continue
                    except OSError as error:
                        result.error = f"cannot save outputs: {error}"
                summary.failed += 1
                tqdm.write(f"error: {result.path}: {result.error}", file=sys.stderr)
        return summary

    def _deliver(self, name: str, result: VideoResult, store: Optional[OutputStore]) -> None:
        if store is not None:
            store.save(name, result.outputs)
        else:
            tqdm.write(describe_outputs(result.path, result.outputs))
        if self.cfg.show_pred:
            predictions = describe_predictions(result.logits, result.outputs["timestamps_ms"], self.class_names())
            tqdm.write(f"{result.path}: top-5 classes per window\n{predictions}")

    # ---- the decoding threads --------------------------------------------------------------
    def _decode_jobs(self, jobs: queue.SimpleQueue, skip, messages: queue.Queue, stop: threading.Event,
                     codec_threads: int) -> None:
        """One decoding thread: takes (job, path) from ``jobs`` until none is left."""
        def send(*message):
            while not stop.is_set():
                try:
                    messages.put(message, timeout=0.1)
                    return
                except queue.Full:
                    continue
            raise _Stopped

        try:
            while True:
                try:
                    job, path = jobs.get_nowait()
                except queue.Empty:
                    break
                if skip is not None and skip(path):
                    send("skipped", job, path)
                    continue
                try:
                    self._decode(job, path, send, codec_threads)
                except (VideoError, OSError) as error:
                    send("failed", job, path, str(error))
                except _Stopped:
                    raise
                except Exception as error:  # an unforeseen decoder error must not stop the other videos
                    send("failed", job, path, f"{type(error).__name__}: {error}")
            send("finished", None, None)
        except _Stopped:
            pass

    def _decode(self, job: int, path: str, send: Callable, codec_threads: int) -> None:
        source, reencoded = path, None
        if self.extraction_fps and self.cfg.fps_method == "reencode":
            source = reencoded = reencode_to_fps(path, self.extraction_fps, self.cfg.tmp_path)
        fps = None if reencoded else self.extraction_fps
        try:
            try:
                self._send_frames(job, path, VideoReader(source, fps, codec_threads), send, self.plan.skips_frames)
            except SkipMismatch:
                # frames could not be numbered before decoding (e.g. no timestamps): start again, decoding all
                send("restart", job, path)
                self._send_frames(job, path, VideoReader(source, fps, codec_threads), send, skip_unwanted=False)
        finally:
            if reencoded and not self.cfg.keep_tmp_files:
                os.remove(reencoded)

    def _send_frames(self, job: int, path: str, reader: VideoReader, send: Callable, skip_unwanted: bool) -> None:
        with reader:
            send("start", job, path, reader.fps, reader.estimated_frames)
            frames, images = [], 0
            for frame in reader.frames(self.plan.uses, skip_unwanted):
                frames.append(frame)
                images += frame.image is not None
                if images == FRAMES_PER_MESSAGE:
                    send("frames", job, path, self._preprocessed(frames))
                    frames, images = [], 0
            send("frames", job, path, self._preprocessed(frames))
            send("end", job, path)

    def _preprocessed(self, frames: list[Frame]) -> list[tuple[int, float, Optional[torch.Tensor]]]:
        """(index, time, network input or None) of each frame; the input is computed on the device.

        It runs here rather than on the main thread, one image at a time, so that each large
        decoded image is allocated and freed by one thread with no stacked copy: handing them to
        another thread made glibc's heap grow with the video's length (benchmarks/: +80 % peak
        RSS over a 10-minute video).
        """
        try:
            with torch.inference_mode():
                return [(f.index, f.time, None if f.image is None else self._network_input(f.image)) for f in frames]
        except Exception as error:  # e.g. a frame size the preprocessing cannot take
            raise VideoError(f"preprocessing failed: {type(error).__name__}: {error}") from error

    def _network_input(self, image: np.ndarray) -> torch.Tensor:
        """One decoded (H, W, 3) RGB image -> the model's preprocessed (C, h, w) tensor on the device."""
        frame = torch.from_numpy(image)[None]
        if self.device.type == "cuda":
            frame = frame.pin_memory().to(self.device, non_blocking=True)
        return self.preprocess(frame)[0]

    # ---- the main thread -------------------------------------------------------------------
    def _consume(self, messages: queue.Queue, progress: bool, decoders: int) -> Iterator[VideoResult]:
        videos: dict[int, _Video] = {}  # in flight, in the order they started
        batch: list[tuple[_Video, Window]] = []
        while decoders:
            kind, job, path, *args = messages.get()
            if kind == "finished":  # a decoding thread's last message
                decoders -= 1
            elif kind == "skipped":
                yield VideoResult(path, skipped=True)
            elif kind in ("failed", "restart"):  # failed: the video's last message; restart: a new "start" follows
                video = videos.pop(job, None)
                if video is not None:
                    batch = [(v, w) for v, w in batch if v is not video]
                    if video.progress is not None:
                        video.progress.close()
                if kind == "failed":
                    yield VideoResult(path, error=args[0])
            elif kind == "start":
                fps, estimated_frames = args
                expected = self.plan.count(estimated_frames) if estimated_frames else None
                bar = None
                if progress and expected and expected >= LONG_VIDEO_WINDOWS:
                    bar = tqdm(total=expected, desc=os.path.basename(path), unit="window", leave=False)
                videos[job] = _Video(path, fps, WindowAssembler(self.plan, 1.0 / fps), bar)
            elif kind == "frames":
                batch += [(videos[job], w) for w in self._windows_from(videos[job], args[0])]
            elif kind == "end":
                video = videos[job]
                video.decoded = True
                padded = video.assembler.finish()
                if padded is not None:
                    warnings.warn(
                        f"{path}: {video.frame_count} frames is shorter than one window of "
                        f"{self.plan.stack}; the last frame is repeated to fill it"
                    )
                    video.windows_in_batch += 1
                    batch.append((video, padded))
            while len(batch) >= self.batch_size:
                self._run_batch(batch[: self.batch_size])
                batch = batch[self.batch_size :]
            yield from self._finished(videos)
        if batch:
            self._run_batch(batch)
        yield from self._finished(videos)

    def _windows_from(self, video: _Video, frames: list[tuple[int, float, Optional[torch.Tensor]]]) -> list[Window]:
        windows = []
        for index, time, tensor in frames:
            window = video.assembler.add(index, time, tensor)
            video.frame_count = index + 1
            if window is not None:
                video.windows_in_batch += 1
                windows.append(window)
        return windows

    def _run_batch(self, batch: list[tuple[_Video, Window]]) -> None:
        clips = torch.stack([window.frames for _, window in batch])
        if self.cfg.compile and len(batch) < self.batch_size:
            # a compiled forward is specialised to one batch shape: pad rather than recompile
            padding = clips[-1:].expand(self.batch_size - len(batch), *clips.shape[1:])
            clips = torch.cat([clips, padding])
        features, logits = self.infer(clips)
        features = features[: len(batch)].float().cpu().numpy()
        logits = logits[: len(batch)].float().cpu().numpy()
        for row, (video, window) in enumerate(batch):
            video.features.append(features[row])
            video.logits.append(logits[row])
            video.times.append((window.start * 1000.0, window.end * 1000.0))
            video.windows_in_batch -= 1
            if video.progress is not None:
                video.progress.update(1)

    def _finished(self, videos: dict[int, _Video]) -> Iterator[VideoResult]:
        """Results of the videos whose every window has been through the network, in start order."""
        for job, video in list(videos.items()):
            if not video.decoded or video.windows_in_batch:
                continue
            del videos[job]
            if video.progress is not None:
                video.progress.close()
            outputs = {
                self.feature_type: np.stack(video.features).astype(np.float32),
                "timestamps_ms": np.array(video.times, dtype=np.float64),
                "fps": np.array(video.fps, dtype=np.float64),
            }
            yield VideoResult(video.path, outputs=outputs, logits=np.stack(video.logits))
