"""The pipeline: decoding processes -> slots of gathered pixels -> preprocessing on the device ->
windows -> batches -> network -> one result per video.

The main thread schedules: it hands each idle decoding process (utils/video/pool.py) a segment of a
video already opened, or else the next video, claimed through the caller's ``claim`` just before
(so that a claim is held only while its video is in work). A long video is cut into segments of
whole windows that several processes decode at once (utils/video/segments.py); their windows are put
back in order. Each message of a process brings a slot of frames, which is preprocessed on the
device in one go (utils/frames/device_feed.py) and cut into windows (utils/frames/windows.py); full batches of
``batch_size`` windows, which may span videos, run through the network. A video's outputs are
assembled once its last window is through (utils/video_in_flight.py); a failure is reported for that
video alone.
"""
import collections
import contextlib
import dataclasses
import os
import warnings
from typing import Callable, Iterator, Optional, Sequence

from tqdm import tqdm

from utils.frames.device_feed import DeviceFeed
from utils.frames.windows import Window, WindowAssembler
from utils.network.runner import Inference
from utils.video.pool import DecoderPool, Died, decoding_threads
from utils.errors import VideoError
from utils.video.reader import check_input
from utils.video_in_flight import VideoInFlight, VideoResult
from utils.video.worker import (DecodeSegment, Failed, Opened, OpenVideo, Restart, SegmentDone, Settings, SlotFilled,
                                 Warned)

LONG_VIDEO_WINDOWS = 20  # videos with more windows get their own progress bar


class Pipeline:
    def __init__(self, inference: Inference, settings: Settings, feature_type: str, batch_size: int = 1,
                 decode_workers: int = 1, decode_cores: int = 1, crop_reduce: str = "none",
                 keep_logits: bool = False, keep_partial: bool = False):
        """``settings``: what the decoding processes need; ``decode_cores``: the cores their FFmpeg
        threads share; ``crop_reduce``: "mean" averages the features of a window's crops (their logits
        stay per crop); ``keep_logits``: return the network's logits too (show_pred)."""
        self.inference = inference
        self.settings = dataclasses.replace(settings, max_segments=decode_workers)
        self.feature_type = feature_type
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.decode_cores = decode_cores
        self.crop_reduce = crop_reduce
        self.keep_logits = keep_logits
        self.keep_partial = keep_partial
        self.windows_through = 0  # windows the network has given features for, over the pipeline's life
        self._decoding: Optional[tuple[DecoderPool, DeviceFeed]] = None

    def extract_many(self, paths: Sequence[str], claim: Optional[Callable[[str], Optional[str]]] = None,
                     progress: bool = False) -> Iterator[VideoResult]:
        """Yields one VideoResult per path as each finishes (with several decoding processes, in about
        the input order); skipped and failed videos are reported at once. ``claim(path)`` is called just
        before a video is read: a reason ('done', 'claimed', ...) skips it, an exception fails it with
        its message. ``progress`` shows a bar over the windows of long videos."""
        pool, feed = self._started()
        try:
            yield from Extraction(self, pool, feed, paths, claim, progress).run()
        except BaseException:
            # stopped part-way (an error, Ctrl-C, a caller that stopped reading): the processes may still
            # be decoding its videos, so they stop now and the next call starts new ones; an error in
            # closing the feed (a device's sticky error) would only hide the first
            with contextlib.suppress(Exception):
                self.close()
            raise

    def _started(self) -> tuple[DecoderPool, DeviceFeed]:
        """The decoding processes and the feed: started by the first call, kept for the next ones."""
        if self._decoding is None:
            pool = DecoderPool(self.decode_workers, self.settings)
            try:
                p = self.settings.layout.preprocessing
                feed = DeviceFeed(self.inference.device, self.settings.layout, [d.buffer for d in pool.decoders],
                                  p.mean, p.std, p.bgr, self.inference.input_dtype)
            except BaseException:
                pool.close()
                raise
            self._decoding = (pool, feed)
        return self._decoding

    def close(self) -> None:
        """Stops the decoding processes and frees the feed; the next call starts them again."""
        if self._decoding is None:
            return
        pool, feed = self._decoding
        self._decoding = None
        try:
            feed.close()
        finally:
            pool.close()


class Extraction:
    """One call of extract_many: its videos' state, the decoding processes' jobs and the batches."""

    def __init__(self, pipeline: Pipeline, pool: DecoderPool, feed: DeviceFeed, paths: Sequence[str],
                 claim: Optional[Callable[[str], Optional[str]]], progress: bool):
        self.pipeline, self.pool, self.feed = pipeline, pool, feed
        self.unopened = collections.deque(enumerate(paths))
        self.paths = dict(enumerate(paths))
        self.claim, self.progress = claim, progress
        self.jobs_ready: collections.deque = collections.deque()  # segments and reopened videos, first served
        self.attempts: dict[int, int] = {}  # job -> its current attempt, while it is in work
        self.restarts: dict[int, str] = {}  # job -> why it is decoded again in one piece
        self.videos: dict[int, VideoInFlight] = {}
        self.batch: list[tuple[VideoInFlight, Window]] = []
        self.running: collections.deque = collections.deque()  # (batch, Pending) of batches run on the device
        self.results: list[VideoResult] = []

    def run(self) -> Iterator[VideoResult]:
        while True:
            self._hand_out()
            yield from self._take_results()
            if len(self.pool.idle()) == len(self.pool.decoders):  # nothing left to decode
                if self.batch:
                    self._run_batch(self.batch)
                    self.batch = []
                self._finish_batches(wait=True)
                for worker, slot in self.feed.releasable(wait=True):  # every slot free for the next call
                    self.pool.release(worker, slot)
                yield from self._take_results()
                return
            for worker, slot in self.feed.releasable(wait=True):  # no process waits for a slot while we wait
                self.pool.release(worker, slot)
            for worker, message in self.pool.receive(timeout=0.01 if self.running else None):
                self._handle(worker, message)
            self._run_full_batches()
            for worker, slot in self.feed.releasable():
                self.pool.release(worker, slot)
            self._finish_batches(wait=False)

    def _hand_out(self) -> None:
        """Gives every idle process a job: a segment or reopened video first, else the next video; each
        job gets FFmpeg threads for its share of the cores among the jobs that then run."""
        idle = self.pool.idle()
        jobs = []
        for decoder in idle:
            job = self._next_ready() or self._next_video()
            if job is None:
                break
            jobs.append((decoder, job))
        threads = decoding_threads(self.pipeline.decode_cores, len(self.pool.decoders) - len(idle) + len(jobs))
        for decoder, job in jobs:
            self.pool.assign(decoder, dataclasses.replace(job, threads=threads))

    def _next_ready(self):
        """The next segment or reopened video, unless its video was given up meanwhile."""
        while self.jobs_ready:
            job = self.jobs_ready.popleft()
            if self.attempts.get(job.job) == job.attempt:
                return job
        return None

    def _next_video(self) -> Optional[OpenVideo]:
        """The next video to read; those the caller's claim() turns down, and unreadable paths, are
        reported at once."""
        while self.unopened:
            job, path = self.unopened.popleft()
            try:
                check_input(path)
            except VideoError as error:
                self.results.append(VideoResult(path, error=str(error)))
                continue
            try:
                reason = self.claim(path) if self.claim is not None else None
            except OSError as error:  # e.g. a claim that cannot be written: for this video alone
                self.results.append(VideoResult(path, error=f"cannot claim it: {error.strerror}: {error.filename}"))
                continue
            except Exception as error:  # the caller's claim() decides for this video alone
                self.results.append(VideoResult(path, error=str(error) or type(error).__name__))
                continue
            if reason:
                self.results.append(VideoResult(path, skipped=reason))
                continue
            self.attempts[job] = 0
            return OpenVideo(job, 0, path)
        return None

    def _current(self, message) -> Optional[VideoInFlight]:
        """The video a message is about, unless the message is from an attempt given up since."""
        if self.attempts.get(message.job) != message.attempt:
            return None
        return self.videos.get(message.job)

    def _handle(self, worker: int, message) -> None:
        decoder = self.pool.decoders[worker]
        if isinstance(message, (SegmentDone, Failed, Restart)):
            decoder.job = None
        if isinstance(message, SlotFilled):
            self._slot_filled(worker, message)
        elif isinstance(message, Opened):
            self._opened(message)
        elif isinstance(message, SegmentDone):
            video = self._current(message)
            mismatch = video.mismatch(message.digests) if video is not None else None
            if mismatch is not None:
                self._restart(message.job, mismatch)
            elif video is not None:
                padded = video.segment_done(message.segment, message.stats, self.pipeline.keep_partial)
                if padded is not None:
                    self.batch.append((video, padded))
                if video.error is not None:
                    self._drop_windows(video)
        elif isinstance(message, Failed):
            if self.attempts.get(message.job) == message.attempt:
                self._fail(message.job, message.error)
        elif isinstance(message, Restart):
            if self.attempts.get(message.job) == message.attempt:
                self._restart(message.job, message.reason)
        elif isinstance(message, Warned):
            warnings.warn(message.message)
        elif isinstance(message, Died):
            self.feed.forget(worker)
            self.pool.replace(worker)
            job = message.job
            if job is not None and self.attempts.get(job.job) == job.attempt:
                self._fail(job.job, f"the decoding process died (exit code {message.exit_code})")

    def _opened(self, message: Opened) -> None:
        if self.attempts.get(message.job) != message.attempt:
            return
        path = self.paths[message.job]
        plan = self.pipeline.settings.plan
        assemblers = {s.number: WindowAssembler(plan, 1.0 / message.fps, s.first_window, s.end_window)
                      for s in message.segments}
        bar = None
        expected = plan.count(message.estimated_frames) if message.estimated_frames else None
        if self.progress and expected and expected >= LONG_VIDEO_WINDOWS:
            bar = tqdm(total=expected, desc=os.path.basename(path), unit="window", leave=False)
        boundaries = frozenset(s.next_first for s in message.segments if s.next_first is not None)
        self.videos[message.job] = VideoInFlight(path, message.attempt, message.fps, message.completeness,
                                                 assemblers, bar, segments=len(message.segments),
                                                 boundaries=boundaries, restarted=self.restarts.get(message.job))
        for segment in message.segments[1:]:
            self.jobs_ready.append(DecodeSegment(message.job, message.attempt, path, segment))

    def _slot_filled(self, worker: int, message: SlotFilled) -> None:
        video = self._current(message)
        if video is None or video.error is not None:
            if message.slot >= 0:
                self.pool.release(worker, message.slot)
            return
        preprocessed = None
        if message.images:
            try:
                preprocessed = self.pipeline.inference.run(
                    lambda: self.feed.preprocess_slot(worker, message.slot, message.images), self.pipeline.batch_size)
            finally:
                if not self.feed.cuda:
                    self.pool.release(worker, message.slot)
        elif message.slot >= 0:
            self.pool.release(worker, message.slot)
        self.batch += [(video, window) for window in video.add(message, preprocessed)]

    def _fail(self, job: int, error: str) -> None:
        video = self.videos.get(job)
        if video is None:  # failed before it was opened
            del self.attempts[job]
            self.results.append(VideoResult(self.paths[job], error=error, restarted=self.restarts.pop(job, None)))
            return
        video.error = error
        self._drop_windows(video)

    def _restart(self, job: int, reason: str) -> None:
        """Decode the video again in one piece, every frame: its frames could not be numbered first,
        or its segments did not give the frames of one decode."""
        self.restarts[job] = reason
        video = self.videos.pop(job, None)
        if video is not None:
            video.close()
            self._drop_windows(video)
        self.attempts[job] += 1
        self.jobs_ready.appendleft(OpenVideo(job, self.attempts[job], self.paths[job]))

    def _drop_windows(self, video: VideoInFlight) -> None:
        self.batch = [(v, w) for v, w in self.batch if v is not video]

    def _run_full_batches(self) -> None:
        size = self.pipeline.batch_size
        while len(self.batch) >= size:
            self._run_batch(self.batch[:size])
            self.batch = self.batch[size:]

    def _run_batch(self, batch: list[tuple[VideoInFlight, Window]]) -> None:
        self.pipeline.inference.run(lambda: self._run_on_device(batch), self.pipeline.batch_size)

    def _run_on_device(self, batch: list[tuple[VideoInFlight, Window]]) -> None:
        pipeline, inference = self.pipeline, self.pipeline.inference
        rows = pipeline.batch_size if inference.compiled else len(batch)
        clips = inference.batch([frame for _, window in batch for frame in window.frames], len(batch), rows)
        multi_crop = clips.dim() == 6  # (B, crops, C, T, h, w): B windows run as B x crops clips
        features, logits = inference(clips.flatten(0, 1) if multi_crop else clips)
        if multi_crop:  # back to one row per window: (B, crops, D) and (B, crops, classes)
            features, logits = (output.unflatten(0, clips.shape[:2]) for output in (features, logits))
            if pipeline.crop_reduce == "mean":
                features = features.float().mean(dim=1)
        logits = logits[: len(batch)] if pipeline.keep_logits else None
        self.running.append((batch, self.feed.to_host(features[: len(batch)], logits)))

    def _finish_batches(self, wait: bool) -> None:
        """Hands the features of the batches the device has finished to their videos."""
        while self.running and (wait or self.running[0][1].ready()):
            batch, pending = self.running.popleft()
            features, logits = pending.arrays()
            for row, (video, window) in enumerate(batch):
                if video.error is None:
                    video.record(window, features[row], None if logits is None else logits[row])
            self.pipeline.windows_through += len(batch)

    def _take_results(self) -> Iterator[VideoResult]:
        """The results of skipped or failed videos, and of the videos whose every window is through."""
        for job, video in list(self.videos.items()):
            if video.done and not any(v is video for batch, _ in self.running for v, _ in batch):
                del self.videos[job], self.attempts[job]
                self.restarts.pop(job, None)
                self.results.append(video.result(self.pipeline.feature_type))
        results, self.results = self.results, []
        yield from results
